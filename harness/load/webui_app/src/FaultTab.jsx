// The fault controls tab: the site's fault catalogue (description, expected outcome) with a switch for each fault,
// the faults that are on with their time left, and the chaos schedule's upcoming switches.
//
// The tab talks to the plugin's routes on the Locust web UI (harness/load/faultpanel.py), which relay to the site's
// fault API with the manifest's token: the browser never sees the token. Every call sends the header those routes
// require of a state change. Everything from the site is rendered as React text, never as markup.
import { useCallback, useEffect, useState } from "react";
import { useSelector } from "react-redux";
import {
  Alert, Box, Button, MenuItem, Paper, Select, Stack, Table, TableBody, TableCell, TableContainer, TableHead,
  TableRow, TextField, Typography,
} from "@mui/material";

export const FAULT_TAB = "cmg-fault-controls";
// Relative to Locust's page, so it follows --web-base-path.
const API = "./cmg/faults/api";
const REQUEST_HEADER = ["X-Requested-With", "cmg-harness"];
const REFRESH_MS = 1000;

async function call(method, path, body) {
  const options = { method, headers: { [REQUEST_HEADER[0]]: REQUEST_HEADER[1] } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.error || response.statusText);
  }
  return data;
}

// "name=value, name=value" into the fault's parameters (numbers for its int/float parameters).
export function parseParams(text, specs) {
  const values = {};
  for (const item of text.split(",").map((part) => part.trim()).filter(Boolean)) {
    const [name, ...rest] = item.split("=");
    const spec = specs.find((param) => param.name === name.trim());
    if (!spec || rest.length === 0) {
      throw new Error(`unknown parameter ${JSON.stringify(item)} (parameters: ${specs.map((p) => p.name).join(", ")})`);
    }
    const raw = rest.join("=").trim();
    values[spec.name] = spec.type === "int" || spec.type === "float" ? Number(raw) : raw;
  }
  return values;
}

function paramText(params) {
  return Object.entries(params || {}).filter(([, value]) => value !== null).map(([k, v]) => `${k}=${v}`).join(", ");
}

function CatalogueRow({ fault, onSwitch }) {
  const [role, setRole] = useState(fault.default_role || fault.roles[0]);
  const [duration, setDuration] = useState("60");
  const [params, setParams] = useState("");
  const hint = fault.params.map((param) => `${param.name}=${param.default ?? ""}`).join(", ");
  return (
    <TableRow data-catalogue={fault.name}>
      <TableCell sx={{ fontFamily: "monospace" }}>{fault.name}</TableCell>
      <TableCell>{fault.description}</TableCell>
      <TableCell>{fault.expected_outcome}</TableCell>
      <TableCell>
        <Select size="small" value={role} onChange={(event) => setRole(event.target.value)}
                inputProps={{ "data-field": "role" }}>
          {fault.roles.map((name) => <MenuItem key={name} value={name}>{name}</MenuItem>)}
        </Select>
      </TableCell>
      <TableCell>
        <TextField size="small" type="number" value={duration} sx={{ width: "6rem" }}
                   onChange={(event) => setDuration(event.target.value)} inputProps={{ min: 1, "data-field": "duration" }} />
      </TableCell>
      <TableCell>
        {fault.params.length > 0 && (
          <TextField size="small" value={params} placeholder={hint} title={hint} sx={{ minWidth: "10rem" }}
                     onChange={(event) => setParams(event.target.value)} inputProps={{ "data-field": "params" }} />
        )}
      </TableCell>
      <TableCell>
        <Button variant="contained" size="small" className="switch-on"
                onClick={() => onSwitch(fault, { role, duration: Number(duration), params })}>
          Switch on
        </Button>
      </TableCell>
    </TableRow>
  );
}

function ActiveTable({ active, onClear }) {
  return (
    <TableContainer component={Paper}>
      <Table size="small" id="cmg-active-faults">
        <TableHead>
          <TableRow>
            {["Fault", "Role", "Probability", "Parameters", "Time left (s)", "Injections", ""].map((title) => (
              <TableCell key={title}>{title}</TableCell>
            ))}
          </TableRow>
        </TableHead>
        <TableBody>
          {active.map((fault) => (
            <TableRow key={`${fault.name}@${fault.role}`} data-fault={fault.name} data-role={fault.role}>
              <TableCell sx={{ fontFamily: "monospace" }}>{fault.name}</TableCell>
              <TableCell>{fault.role}</TableCell>
              <TableCell>{String(fault.probability)}</TableCell>
              <TableCell>{paramText(fault.params)}</TableCell>
              <TableCell className="time-left">{Number(fault.remaining_s).toFixed(1)}</TableCell>
              <TableCell>{String(fault.injections)}</TableCell>
              <TableCell>
                <Button size="small" color="warning" className="switch-off" onClick={() => onClear(fault.name)}>
                  Switch off
                </Button>
              </TableCell>
            </TableRow>
          ))}
          {active.length === 0 && (
            <TableRow><TableCell colSpan={7}>No fault is on.</TableCell></TableRow>
          )}
        </TableBody>
      </Table>
    </TableContainer>
  );
}

function ScheduleTable({ rows }) {
  if (!rows.length) {
    return <Typography variant="body2" id="cmg-schedule-empty">No chaos schedule switch is coming in this test.</Typography>;
  }
  return (
    <TableContainer component={Paper}>
      <Table size="small" id="cmg-schedule">
        <TableHead>
          <TableRow>
            {["In (s)", "At (s into the test)", "Switch", "Fault", "Role", "Schedule line"].map((title) => (
              <TableCell key={title}>{title}</TableCell>
            ))}
          </TableRow>
        </TableHead>
        <TableBody>
          {rows.map((row, index) => (
            <TableRow key={index} data-fault={row.fault}>
              <TableCell>{row.in}</TableCell>
              <TableCell>{row.at}</TableCell>
              <TableCell>{row.switch}</TableCell>
              <TableCell sx={{ fontFamily: "monospace" }}>{row.fault}</TableCell>
              <TableCell>{row.role}</TableCell>
              <TableCell>{row.line}</TableCell>
            </TableRow>
          ))}
        </TableBody>
      </Table>
    </TableContainer>
  );
}

export default function FaultTab() {
  const [catalogue, setCatalogue] = useState([]);
  const [faults, setFaults] = useState({ active: [], injections: {} });
  const [status, setStatus] = useState({ text: "loading…", error: false });
  const [ready, setReady] = useState(false);
  const schedule = useSelector(({ ui }) => {
    const entry = (ui.extendedStats || []).find(({ key }) => key === FAULT_TAB);
    return entry ? entry.data : [];
  });

  const refresh = useCallback(async () => {
    try {
      setFaults(await call("GET", ""));
      setReady(true);
    } catch (error) {
      setStatus({ text: `cannot read the site's faults: ${error.message}`, error: true });
    }
  }, []);

  useEffect(() => {
    call("GET", "/catalogue")
      .then((data) => setCatalogue(data.faults))
      .catch((error) => setStatus({ text: `cannot read the fault catalogue: ${error.message}`, error: true }));
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);

  const change = async (method, path, body, done) => {
    try {
      await call(method, path, body);
      setStatus({ text: done, error: false });
      await refresh();
    } catch (error) {
      setStatus({ text: error.message, error: true });
    }
  };

  const switchOn = (fault, { role, duration, params }) => {
    let values;
    try {
      values = parseParams(params, fault.params);
    } catch (error) {
      setStatus({ text: error.message, error: true });
      return;
    }
    change("PUT", `/${encodeURIComponent(fault.name)}`, { role, duration, probability: 1, params: values },
           `${fault.name} switched on at ${role} for ${duration} s`);
  };

  return (
    <Box id="cmg-fault-tab" data-ready={ready ? "yes" : "no"} sx={{ display: "flex", flexDirection: "column", gap: 2 }}>
      {status.text && (
        <Alert id="cmg-fault-status" severity={status.error ? "error" : "info"}>{status.text}</Alert>
      )}
      <Stack direction="row" spacing={2} alignItems="center">
        <Typography variant="h6">Faults on now</Typography>
        <Button size="small" variant="outlined" id="cmg-clear-all"
                onClick={() => change("POST", "/reset", undefined, "every fault switched off")}>
          Switch every fault off
        </Button>
      </Stack>
      <ActiveTable active={faults.active}
                   onClear={(name) => change("DELETE", `/${encodeURIComponent(name)}`, undefined, `${name} switched off`)} />
      <Typography variant="h6">Chaos schedule: upcoming switches</Typography>
      <ScheduleTable rows={schedule} />
      <Typography variant="h6">Fault catalogue</Typography>
      <TableContainer component={Paper}>
        <Table size="small" id="cmg-catalogue">
          <TableHead>
            <TableRow>
              {["Fault", "What it does", "Expected outcome", "Role", "Duration (s)", "Parameters", ""].map((title) => (
                <TableCell key={title}>{title}</TableCell>
              ))}
            </TableRow>
          </TableHead>
          <TableBody>
            {catalogue.map((fault) => <CatalogueRow key={fault.name} fault={fault} onSwitch={switchOn} />)}
          </TableBody>
        </Table>
      </TableContainer>
    </Box>
  );
}
