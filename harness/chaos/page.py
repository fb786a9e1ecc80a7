"""The fault control page served by ``harness.load.faultpanel``: plain HTML and script, no assets from elsewhere."""

from __future__ import annotations

FAULT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cmg-harness: fault controls</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; } h2 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
  table { border-collapse: collapse; min-width: 40rem; background: #fff; }
  th, td { border: 1px solid #d0d0d5; padding: .3rem .6rem; text-align: left; font-size: .9rem; }
  th { background: #eef0f4; } td.num { text-align: right; }
  form { display: grid; grid-template-columns: max-content 22rem; gap: .4rem .8rem; align-items: center; }
  #fault-description { grid-column: 1 / 3; font-size: .85rem; color: #555; max-width: 44rem; }
  button { padding: .3rem .9rem; cursor: pointer; }
  #status { margin-top: .8rem; font-size: .85rem; color: #555; } #status.error { color: #b00020; }
  a { color: #0b57d0; }
</style>
</head>
<body>
<h1>Fault controls</h1>
<div>Switch the mock site's faults on and off while Locust runs. <a href="../">Back to Locust</a></div>

<h2>Active faults</h2>
<table id="active">
  <thead><tr><th>fault</th><th>role</th><th>probability</th><th>parameters</th><th>ends in (s)</th>
    <th>injections</th><th></th></tr></thead>
  <tbody></tbody>
</table>
<div><button type="button" id="fault-reset">Clear every fault</button></div>

<h2>Switch a fault on</h2>
<form id="fault-form" onsubmit="return false">
  <label for="fault-name">fault</label><select id="fault-name"></select>
  <div id="fault-description"></div>
  <label for="fault-role">role</label><select id="fault-role"></select>
  <label for="fault-probability">probability</label>
  <input id="fault-probability" type="number" min="0" max="1" step="0.05" value="1">
  <label for="fault-duration">duration (s)</label>
  <input id="fault-duration" type="number" min="1" step="1" value="60">
  <span>parameters</span><div id="fault-params"></div>
  <span></span><div><button type="button" id="fault-set">Switch on</button></div>
</form>

<h2>Injections since the site started</h2>
<table id="injections"><thead><tr><th>fault</th><th>injections</th></tr></thead><tbody></tbody></table>
<div id="status">loading…</div>

<script>
"use strict";
const api = location.pathname.replace(/\\/+$/, "") + "/api";
let catalogue = [];

async function call(method, path, body) {
  const options = {method: method, headers: {"X-Requested-With": "cmg-harness"}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(api + path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(data.error || response.statusText); }
  return data;
}

function say(text, error) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = error ? "error" : "";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) { td.className = className; }
  row.appendChild(td);
  return td;
}

function spec() {
  const name = document.getElementById("fault-name").value;
  return catalogue.find((fault) => fault.name === name);
}

function showFault() {
  const fault = spec();
  if (!fault) { return; }
  document.getElementById("fault-description").textContent = fault.description + " Expected: " +
    fault.expected_outcome;
  const roles = document.getElementById("fault-role");
  roles.replaceChildren(...fault.roles.map((role) => new Option(role, role, false, role === fault.default_role)));
  const params = document.getElementById("fault-params");
  params.replaceChildren();
  for (const param of fault.params) {
    const label = document.createElement("label");
    label.textContent = param.name + " ";
    label.title = param.description;
    const input = document.createElement("input");
    input.name = "param-" + param.name;
    input.dataset.param = param.name;
    input.dataset.type = param.type;
    input.type = param.type === "int" || param.type === "float" ? "number" : "text";
    if (param.default !== null) { input.value = param.default; }
    label.appendChild(input);
    params.appendChild(label);
    params.appendChild(document.createElement("br"));
  }
}

function paramValues() {
  const values = {};
  for (const input of document.querySelectorAll("#fault-params input")) {
    if (input.value === "") { continue; }
    values[input.dataset.param] = input.type === "number" ? Number(input.value) : input.value;
  }
  return values;
}

function showActive(data) {
  const body = document.querySelector("#active tbody");
  body.replaceChildren();
  for (const fault of data.active) {
    const row = document.createElement("tr");
    row.dataset.fault = fault.name;
    row.dataset.role = fault.role;
    cell(row, fault.name);
    cell(row, fault.role);
    cell(row, String(fault.probability), "num");
    cell(row, Object.entries(fault.params).filter(([, v]) => v !== null).map(([k, v]) => k + "=" + v).join(", "));
    cell(row, fault.remaining_s.toFixed(1), "num");
    cell(row, String(fault.injections), "num injections");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "clear";
    button.textContent = "Clear";
    button.title = "switch " + fault.name + " off (at every role)";
    button.addEventListener("click", () => change("DELETE", "/" + encodeURIComponent(fault.name), undefined,
                                                  fault.name + " cleared"));
    cell(row, "").appendChild(button);
    body.appendChild(row);
  }
  if (!data.active.length) {
    const row = document.createElement("tr");
    cell(row, "no fault is on").colSpan = 7;
    body.appendChild(row);
  }
  const injections = document.querySelector("#injections tbody");
  injections.replaceChildren();
  for (const [name, count] of Object.entries(data.injections).filter(([, count]) => count > 0)) {
    const row = document.createElement("tr");
    row.dataset.fault = name;
    cell(row, name);
    cell(row, String(count), "num");
    injections.appendChild(row);
  }
}

async function refresh() {
  try {
    showActive(await call("GET", ""));
    document.body.dataset.ready = "yes";
    say("updated " + new Date().toLocaleTimeString());
  } catch (error) {
    say("cannot read the site's faults: " + error.message, true);
  }
}

async function change(method, path, body, done) {
  try {
    await call(method, path, body);
    say(done);
    await refresh();
  } catch (error) {
    say(error.message, true);
  }
}

document.getElementById("fault-name").addEventListener("change", showFault);
document.getElementById("fault-set").addEventListener("click", () => {
  const fault = spec();
  if (!fault) { return; }
  const body = {role: document.getElementById("fault-role").value,
                probability: Number(document.getElementById("fault-probability").value),
                duration: Number(document.getElementById("fault-duration").value),
                params: paramValues()};
  change("PUT", "/" + encodeURIComponent(fault.name), body, fault.name + " switched on");
});
document.getElementById("fault-reset").addEventListener("click",
  () => change("POST", "/reset", undefined, "every fault cleared"));

(async () => {
  try {
    catalogue = (await call("GET", "/catalogue")).faults;
    const names = document.getElementById("fault-name");
    names.replaceChildren(...catalogue.map((fault) => new Option(fault.name, fault.name)));
    showFault();
  } catch (error) {
    say("cannot read the fault catalogue: " + error.message, true);
  }
  await refresh();
  setInterval(refresh, 1000);
})();
</script>
</body>
</html>
"""
