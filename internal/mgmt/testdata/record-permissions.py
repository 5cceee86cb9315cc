# Records the statuses a live RabbitMQ management API (127.0.0.1:15672, guest/guest)
# answers for the permission table (rabbitmq-3.10-permissions.json; reformat the
# printed rows into its "rows"). It creates and resets vhosts mgmtsec-v1/v2 and
# users mgmtsec-*; delete them afterwards. Run with a python3 that has no extra
# modules: only the standard library is used.
import json, urllib.request, base64, sys
BASE="http://127.0.0.1:15672/api"
def req(m, p, user="guest", pw="guest", body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(BASE+p, data=data, method=m)
    r.add_header("Authorization", "Basic "+base64.b64encode(f"{user}:{pw}".encode()).decode())
    r.add_header("content-type","application/json")
    try:
        with urllib.request.urlopen(r) as resp: return resp.status, resp.read()
    except urllib.error.HTTPError as e: return e.code, e.read()
users=[("adm","administrator"),("mon","monitoring"),("pm","policymaker"),("mg","management"),("none","")]
def setup():
    for v in ["mgmtsec-v1","mgmtsec-v2"]:
        req("DELETE","/vhosts/"+v); req("PUT","/vhosts/"+v)
    for u,t in users:
        req("PUT",f"/users/mgmtsec-{u}",body={"password":"p","tags":t})
        req("PUT",f"/permissions/mgmtsec-v1/mgmtsec-{u}",body={"configure":".*","write":".*","read":".*"})
    # guest creating vhost gets perms automatically; ensure adm has none on v2
    req("DELETE","/permissions/mgmtsec-v2/mgmtsec-adm")
    for v,n in [("mgmtsec-v1","1"),("mgmtsec-v2","2")]:
        req("PUT",f"/queues/{v}/q{n}",body={"durable":True})
        req("PUT",f"/exchanges/{v}/x{n}",body={"type":"direct"})
        req("POST",f"/bindings/{v}/e/x{n}/q/q{n}",body={"routing_key":"k"})
        req("PUT",f"/policies/{v}/p{n}",body={"pattern":"^zzz","definition":{"max-length":10}})
rows=[]
def row(m,p,body=None): rows.append((m,p,body))
for V,n in [("mgmtsec-v1","1"),("mgmtsec-v2","2")]:
    pass
row("GET","/overview"); row("GET","/whoami"); row("GET","/nodes"); row("GET","/cluster-name"); row("GET","/extensions")
row("GET","/vhosts")
row("GET","/users"); row("GET","/users/mgmtsec-mg"); row("GET","/users/mgmtsec-mg/permissions"); row("GET","/users/mgmtsec-pm/permissions")
row("PUT","/users/mgmtsec-tmp-{u}",{"password":"p","tags":""}); row("DELETE","/users/mgmtsec-tmp-{u}")
row("GET","/permissions")
row("GET","/policies"); row("GET","/queues"); row("GET","/exchanges"); row("GET","/bindings")
row("GET","/connections"); row("GET","/channels"); row("GET","/consumers")
row("GET","/definitions")
row("GET","/health/checks/alarms")
row("PUT","/vhosts/mgmtsec-new-{u}"); row("DELETE","/vhosts/mgmtsec-new-{u}")
for V,n in [("mgmtsec-v1","1"),("mgmtsec-v2","2")]:
    row("GET",f"/vhosts/{V}"); row("GET",f"/vhosts/{V}/permissions")
    row("GET",f"/permissions/{V}/mgmtsec-mg")
    row("PUT",f"/permissions/{V}/mgmtsec-none",{"configure":"","write":"","read":""}) if V.endswith("2") else None
    row("DELETE",f"/permissions/{V}/mgmtsec-none") if V.endswith("2") else None
    row("GET",f"/policies/{V}"); row("GET",f"/policies/{V}/p{n}")
    row("PUT",f"/policies/{V}/t-{{u}}",{"pattern":"^zzz","definition":{"max-length":5}}); row("DELETE",f"/policies/{V}/t-{{u}}")
    row("GET",f"/queues/{V}"); row("GET",f"/queues/{V}/q{n}")
    row("PUT",f"/queues/{V}/t-{{u}}",{"durable":False}); row("DELETE",f"/queues/{V}/t-{{u}}")
    row("GET",f"/queues/{V}/q{n}/bindings")
    row("POST",f"/queues/{V}/q{n}/get",{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"})
    row("DELETE",f"/queues/{V}/q{n}/contents")
    row("GET",f"/exchanges/{V}"); row("GET",f"/exchanges/{V}/x{n}")
    row("PUT",f"/exchanges/{V}/t-{{u}}",{"type":"direct"}); row("DELETE",f"/exchanges/{V}/t-{{u}}")
    row("POST",f"/exchanges/{V}/x{n}/publish",{"properties":{},"routing_key":"k","payload":"x","payload_encoding":"string"})
    row("GET",f"/exchanges/{V}/x{n}/bindings/source")
    row("GET",f"/bindings/{V}"); row("GET",f"/bindings/{V}/e/x{n}/q/q{n}")
    row("POST",f"/bindings/{V}/e/x{n}/q/q{n}",{"routing_key":"t"}); row("DELETE",f"/bindings/{V}/e/x{n}/q/q{n}/t")
    row("GET",f"/consumers/{V}")
    row("GET",f"/aliveness-test/{V}")
setup()
out=[]
for m,p,b in rows:
    res={}
    for u,_ in users:
        st,body=req(m,p.replace("{u}",u),f"mgmtsec-{u}","p",b)
        res[u]=st
    out.append((m,p,b,res))
    print(m,p,res, file=sys.stderr)
json.dump(out,sys.stdout)
