package warren.compat;

/** Replies to RPC requests (the reply goes to the request's reply-to). */
public class RpcServer {
    public String handle(String in) {
        return in.toUpperCase();
    }
}
