// Warren management UI: plain JavaScript over the RabbitMQ-shaped HTTP API.
"use strict";
let auth = sessionStorage.getItem("auth");
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
// enc escapes a URI component fully, quotes and parentheses included, so
// it is also safe inside an attribute; esc() it anyway where it goes into one.
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

async function api(method, path, body) {
  const r = await fetch("api" + path, {method, headers: {"Authorization": "Basic " + auth, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 401) { let t = ""; try { t = (await r.json()).reason; } catch (e) {} throw new Error(t || "not authorised"); }
  if (!r.ok) { let t = await r.text(); try { t = JSON.parse(t).reason; } catch (e) {} throw new Error(t); }
  return r.status === 204 || r.status === 201 ? null : r.json();
}

function table(rows, cols) {
  let h = "<table><tr>" + cols.map((c) => "<th>" + esc(c[0]) + "</th>").join("") + "</tr>";
  for (const r of rows) h += "<tr>" + cols.map((c) => "<td>" + c[1](r) + "</td>").join("") + "</tr>";
  return h + "</table>";
}

$("#loginForm").onsubmit = async (e) => {
  e.preventDefault();
  auth = btoa($("#user").value + ":" + $("#pass").value);
  try { await api("GET", "/whoami"); sessionStorage.setItem("auth", auth); start(); }
  catch (err) { $("#loginErr").textContent = "Login failed: " + err.message; }
};
$("#logout").onclick = () => { sessionStorage.removeItem("auth"); location.hash = ""; location.reload(); };

async function start() {
  const me = await api("GET", "/whoami");
  $("#login").hidden = true; $("#tabs").hidden = false; $("#main").hidden = false;
  $("#who").textContent = "User: " + me.name;
  window.onhashchange = route; route();
}

let timer = null;
async function route() {
  clearInterval(timer);
  const page = (location.hash || "#overview").slice(1);
  const [name, ...rest] = page.split("/");
  const views = {overview, connections, channels, exchanges, queues, queue, admin};
  try { await (views[name] || overview)(...rest.map(decodeURIComponent)); }
  catch (err) { $("#main").innerHTML = "<p class=err>" + esc(err.message) + "</p>"; }
}

async function overview() {
  const draw = async () => {
    const o = await api("GET", "/overview");
    const h = await api("GET", "/warren/history");
    $("#node").textContent = "Node: " + o.node + " · cluster " + o.cluster_name;
    const t = o.object_totals, q = o.queue_totals, m = o.message_stats || {};
    $("#main").innerHTML = "<h2>Overview</h2>" +
      table([o], [["Connections", () => t.connections], ["Channels", () => t.channels], ["Exchanges", () => t.exchanges],
        ["Queues", () => t.queues], ["Consumers", () => t.consumers], ["Ready", () => q.messages_ready],
        ["Unacked", () => q.messages_unacknowledged], ["Publish/s", () => ((m.publish_details || {}).rate || 0).toFixed(1)],
        ["Deliver/s", () => ((m.deliver_get_details || {}).rate || 0).toFixed(1)]]) +
      "<h3>Queued messages (last ten minutes)</h3><canvas id=cq width=700 height=140></canvas>" +
      "<h3>Message rates (last ten minutes)</h3><canvas id=cr width=700 height=140></canvas>" +
      "<h3>Node</h3>" + table(o.listeners || [], [["Protocol", (l) => esc(l.protocol)], ["Bound to", (l) => esc(l.ip_address)], ["Port", (l) => l.port]]);
    chart($("#cq"), h.map((s) => [s.At, s.Ready, s.Unacked]), ["ready", "unacked"]);
    const rates = []; for (let i = 1; i < h.length; i++) { const d = (h[i].At - h[i-1].At) / 1000 || 1;
      rates.push([h[i].At, (h[i].Publish - h[i-1].Publish) / d, (h[i].Deliver - h[i-1].Deliver) / d]); }
    chart($("#cr"), rates, ["publish", "deliver"]);
  };
  await draw(); timer = setInterval(() => draw().catch(() => {}), 5000);
}

function chart(c, pts, names) {
  const g = c.getContext("2d"), W = c.width, H = c.height, colors = ["#5a2d82", "#d08000"];
  g.clearRect(0, 0, W, H);
  if (pts.length < 2) { g.fillText("collecting samples…", 10, 20); return; }
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  let max = 1; for (const p of pts) for (let i = 1; i < p.length; i++) max = Math.max(max, p[i]);
  for (let s = 1; s < pts[0].length; s++) {
    g.strokeStyle = colors[s - 1]; g.beginPath();
    pts.forEach((p, i) => { const x = 40 + (W - 50) * (p[0] - t0) / (t1 - t0 || 1), y = H - 15 - (H - 30) * p[s] / max;
      i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke(); g.fillStyle = colors[s - 1]; g.fillText(names[s - 1], 45 + 60 * (s - 1), 12);
  }
  g.fillStyle = "#000"; g.fillText(String(Math.round(max)), 2, 20); g.fillText("0", 2, H - 15);
}

async function connections() {
  const cs = await api("GET", "/connections");
  $("#main").innerHTML = "<h2>Connections</h2>" + table(cs, [["Name", (c) => esc(c.name)], ["User", (c) => esc(c.user)],
    ["Virtual host", (c) => esc(c.vhost)], ["Channels", (c) => c.channels], ["State", (c) => c.state],
    ["From client", (c) => c.recv_oct], ["To client", (c) => c.send_oct],
    ["", (c) => "<button data-close=\"" + esc(c.name) + "\">Close</button>"]]);
  document.querySelectorAll("[data-close]").forEach((b) => b.onclick = async () => {
    await api("DELETE", "/connections/" + enc(b.dataset.close)); route(); });
}

async function channels() {
  const cs = await api("GET", "/channels");
  $("#main").innerHTML = "<h2>Channels</h2>" + table(cs, [["Channel", (c) => esc(c.name)], ["User", (c) => esc(c.user)],
    ["Virtual host", (c) => esc(c.vhost)], ["Consumers", (c) => c.consumer_count], ["Unacked", (c) => c.messages_unacknowledged]]);
}

async function exchanges() {
  const xs = await api("GET", "/exchanges");
  $("#main").innerHTML = "<h2>Exchanges</h2>" + table(xs, [["Virtual host", (x) => esc(x.vhost)],
    ["Name", (x) => esc(x.name || "(AMQP default)")], ["Type", (x) => esc(x.type)], ["Durable", (x) => x.durable ? "D" : ""],
    ["Internal", (x) => x.internal ? "I" : ""]]);
}

let qpage = 1;
async function queues() {
  const filter = sessionStorage.getItem("qfilter") || "";
  const res = await api("GET", "/queues?page=" + qpage + "&page_size=100&name=" + enc(filter));
  $("#main").innerHTML = "<h2>Queues</h2><label>Filter <input id=qf value=\"" + esc(filter) + "\"></label> " +
    "page " + res.page + " of " + Math.max(res.page_count, 1) + " (" + res.filtered_count + " queues) " +
    "<button id=prev>&lt;</button><button id=next>&gt;</button>" +
    table(res.items, [["Virtual host", (q) => esc(q.vhost)],
      ["Name", (q) => "<a href=\"" + esc("#queue/" + enc(q.vhost) + "/" + enc(q.name)) + "\">" + esc(q.name) + "</a>"],
      ["Ready", (q) => q.messages_ready], ["Unacked", (q) => q.messages_unacknowledged], ["Total", (q) => q.messages],
      ["Consumers", (q) => q.consumers], ["Features", (q) => (q.durable ? "D " : "") + (q.auto_delete ? "AD " : "") + (q.exclusive ? "Excl" : "")]]) +
    "<fieldset><legend>Add a new queue</legend><label>Virtual host <input id=nqv value='/'></label>" +
    "<label>Name <input id=nqn></label><label>Durable <input id=nqd type=checkbox checked></label>" +
    "<button id=nqb>Add queue</button> <span id=nqe class=err></span></fieldset>";
  $("#qf").onchange = () => { sessionStorage.setItem("qfilter", $("#qf").value); qpage = 1; route(); };
  $("#prev").onclick = () => { if (qpage > 1) { qpage--; route(); } };
  $("#next").onclick = () => { if (qpage < res.page_count) { qpage++; route(); } };
  $("#nqb").onclick = async () => {
    try { await api("PUT", "/queues/" + enc($("#nqv").value) + "/" + enc($("#nqn").value), {durable: $("#nqd").checked}); route(); }
    catch (err) { $("#nqe").textContent = err.message; } };
}

async function queue(vh, name) {
  const path = "/queues/" + enc(vh) + "/" + enc(name);
  const q = await api("GET", path);
  const bs = await api("GET", path + "/bindings");
  $("#main").innerHTML = "<h2>Queue <span id=qname>" + esc(name) + "</span></h2>" +
    table([q], [["Ready", () => "<span id=qready>" + q.messages_ready + "</span>"], ["Unacked", () => q.messages_unacknowledged],
      ["Consumers", () => q.consumers], ["Durable", () => q.durable], ["Arguments", () => esc(JSON.stringify(q.arguments))],
      ["Policy", () => esc(JSON.stringify(q.effective_policy_definition))]]) +
    "<h3>Bindings</h3>" + table(bs, [["From", (b) => esc(b.source || "(default exchange)")], ["Routing key", (b) => esc(b.routing_key)]]) +
    "<fieldset><legend>Publish message</legend><label>Payload <input id=pp size=40></label>" +
    "<button id=pub>Publish message</button> <span id=pubr></span></fieldset>" +
    "<fieldset><legend>Get messages</legend><label>Ack mode <select id=am><option value=ack_requeue_true>Nack message requeue true</option>" +
    "<option value=ack_requeue_false>Ack message requeue false</option></select></label><label>Messages <input id=gc value=1 size=3></label>" +
    "<button id=get>Get Message(s)</button><div id=got></div></fieldset>" +
    "<button id=purge>Purge messages</button> <button id=del>Delete queue</button>";
  $("#pub").onclick = async () => {
    const r = await api("POST", "/exchanges/" + enc(vh) + "/amq.default/publish", {properties: {}, routing_key: name, payload: $("#pp").value, payload_encoding: "string"});
    $("#pubr").textContent = r.routed ? "Message published." : "Message published, but not routed.";
  };
  $("#get").onclick = async () => {
    const ms = await api("POST", path + "/get", {count: +$("#gc").value, ackmode: $("#am").value, encoding: "auto", truncate: 50000});
    $("#got").innerHTML = ms.length ? ms.map((m, i) => "<p>Message " + (i + 1) + " (" + m.message_count + " remaining)</p><pre class=payload>" + esc(m.payload) + "</pre>").join("")
      : "<p>Queue is empty</p>";
  };
  $("#purge").onclick = async () => { await api("DELETE", path + "/contents"); route(); };
  $("#del").onclick = async () => { if (confirm("Delete queue " + name + "?")) { await api("DELETE", path); location.hash = "#queues"; } };
}

async function admin() {
  const [users, vhosts, perms, pols] = await Promise.all([api("GET", "/users"), api("GET", "/vhosts"), api("GET", "/permissions"), api("GET", "/policies")]);
  $("#main").innerHTML = "<h2>Admin</h2><h3>Users</h3>" + table(users, [["Name", (u) => esc(u.name)], ["Tags", (u) => esc(u.tags.join(", "))],
      ["", (u) => "<button data-deluser=\"" + esc(u.name) + "\">Delete</button>"]]) +
    "<fieldset><legend>Add a user</legend><label>Username <input id=nu></label><label>Password <input id=np type=password></label>" +
    "<label>Tags <input id=nt></label><button id=adduser>Add user</button></fieldset>" +
    "<h3>Virtual hosts</h3>" + table(vhosts, [["Name", (v) => esc(v.name)], ["Messages", (v) => v.messages]]) +
    "<fieldset><legend>Add a virtual host</legend><label>Name <input id=nv></label><button id=addvh>Add virtual host</button></fieldset>" +
    "<h3>Permissions</h3>" + table(perms, [["User", (p) => esc(p.user)], ["Virtual host", (p) => esc(p.vhost)],
      ["Configure", (p) => esc(p.configure)], ["Write", (p) => esc(p.write)], ["Read", (p) => esc(p.read)]]) +
    "<fieldset><legend>Set permission</legend><label>User <input id=pu></label><label>Virtual host <input id=pv value='/'></label>" +
    "<label>Configure <input id=pc value='.*'></label><label>Write <input id=pw value='.*'></label><label>Read <input id=pr value='.*'></label>" +
    "<button id=setperm>Set permission</button></fieldset>" +
    "<h3>Policies</h3>" + table(pols, [["Virtual host", (p) => esc(p.vhost)], ["Name", (p) => esc(p.name)], ["Pattern", (p) => esc(p.pattern)],
      ["Apply to", (p) => esc(p["apply-to"])], ["Definition", (p) => esc(JSON.stringify(p.definition))], ["Priority", (p) => p.priority]]) +
    "<fieldset><legend>Add / update a policy</legend><label>Virtual host <input id=lv value='/'></label><label>Name <input id=ln></label>" +
    "<label>Pattern <input id=lp></label><label>Definition <input id=ld size=30 value='{\"ha-mode\":\"all\"}'></label>" +
    "<button id=setpol>Add / update policy</button></fieldset><p id=adminErr class=err></p>";
  const guard = (fn) => async () => { try { await fn(); route(); } catch (e) { $("#adminErr").textContent = e.message; } };
  $("#adduser").onclick = guard(() => api("PUT", "/users/" + enc($("#nu").value), {password: $("#np").value, tags: $("#nt").value}));
  $("#addvh").onclick = guard(() => api("PUT", "/vhosts/" + enc($("#nv").value)));
  $("#setperm").onclick = guard(() => api("PUT", "/permissions/" + enc($("#pv").value) + "/" + enc($("#pu").value),
    {configure: $("#pc").value, write: $("#pw").value, read: $("#pr").value}));
  $("#setpol").onclick = guard(() => api("PUT", "/policies/" + enc($("#lv").value) + "/" + enc($("#ln").value),
    {pattern: $("#lp").value, definition: JSON.parse($("#ld").value), "apply-to": "all"}));
  document.querySelectorAll("[data-deluser]").forEach((b) => b.onclick = guard(() => api("DELETE", "/users/" + enc(b.dataset.deluser))));
}

if (auth) start().catch(() => { sessionStorage.removeItem("auth"); auth = null; });
