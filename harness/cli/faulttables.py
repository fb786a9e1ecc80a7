"""The tables ``cmg-harness faults`` prints for people: the catalogue, the active faults, what a change did.

The control API's JSON stays the machine output (``--json``); these render the same data with ``rich`` so that the
catalogue reads as a reference (what each fault does, where, and what a client should see) instead of ~475 lines of
JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

#: The width of a table printed to a file or pipe (rich would use 80, which wraps every description to many lines).
PIPE_WIDTH = 120


def console(file: Any = None) -> Console:
    """A console for ``file`` (stdout by default): the terminal's width, or :data:`PIPE_WIDTH` when not a terminal."""
    probe = Console(file=file)
    width = None if probe.is_terminal else PIPE_WIDTH
    return Console(file=file, width=width, soft_wrap=False)


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "unset" if value is None else str(value)


def _target(fault: Mapping[str, Any]) -> Text:
    text = Text(str(fault["default_role"]), style="bold")
    others = [role for role in fault["roles"] if role != fault["default_role"]]
    if others:
        text.append(f"\nor {', '.join(others)}", style="dim")
    return text


def _what(fault: Mapping[str, Any]) -> Text:
    text = Text(str(fault["description"]))
    params = fault.get("params") or []
    if params:
        shown = ", ".join(f"{param['name']}={_value(param['default'])}" for param in params)
        text.append(f"\nparams: {shown}", style="dim")
    return text


def _expected(fault: Mapping[str, Any]) -> Text:
    text = Text(str(fault["expected_outcome"]))
    status, reason = fault.get("expected_status"), fault.get("expected_reason")
    if status is not None:
        text.append(f"\nstatus {status}" + (f" {reason}" if reason else ""), style="dim")
    return text


def catalogue_tables(catalogue: Mapping[str, Any], source: str) -> RenderableType:
    """The server-side faults (name, target role, what it does and its parameters, expected outcome) and the
    device faults, under a caption saying where the catalogue came from."""
    server = Table(title=f"Server-side faults ({source})", title_justify="left", show_lines=True, expand=True)
    server.add_column("fault", style="cyan", no_wrap=True)
    server.add_column("target", no_wrap=True)
    server.add_column("what it does", ratio=2)
    server.add_column("expected outcome", ratio=3)
    for fault in catalogue.get("faults", []):
        server.add_row(str(fault["name"]), _target(fault), _what(fault), _expected(fault))
    device = Table(title="Device faults (a share of the fleet: --fleet-mix or a chaos schedule's devices)",
                   title_justify="left", show_lines=True, expand=True)
    device.add_column("fault", style="cyan", no_wrap=True)
    device.add_column("what it does", ratio=2)
    device.add_column("expected outcome", ratio=3)
    for fault in catalogue.get("device_faults", []):
        device.add_row(str(fault["name"]), str(fault["description"]), str(fault["expected_outcome"]))
    return Group(server, Text(""), device)


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_value(value)}" for name, value in params.items()) or "-"


def _time_left(fault: Mapping[str, Any]) -> str:
    remaining = fault.get("remaining_s")
    return "-" if remaining is None else f"{float(remaining):.0f} s"


def active_table(faults: Iterable[Mapping[str, Any]], title: str = "Active faults") -> Table:
    """One row per active fault: name, role, probability, parameters, time left, injections."""
    table = Table(title=title, title_justify="left")
    table.add_column("fault", style="cyan", no_wrap=True)
    table.add_column("role")
    table.add_column("probability", justify="right")
    table.add_column("params")
    table.add_column("time left", justify="right")
    table.add_column("injections", justify="right")
    for fault in faults:
        table.add_row(str(fault["name"]), str(fault["role"]), f"{float(fault['probability']):g}",
                      _params(fault.get("params") or {}), _time_left(fault), str(fault.get("injections", 0)))
    return table


def listing(data: Mapping[str, Any]) -> RenderableType:
    """``faults list``: the active faults (or a line saying there are none) and the injections since the site started."""
    active = list(data.get("active", []))
    parts: list[RenderableType] = [active_table(active) if active else Text("No fault is active.")]
    injected = {name: count for name, count in (data.get("injections") or {}).items() if count}
    if injected:
        parts.append(Text("Injections since the site started: "
                          + ", ".join(f"{name} {count}" for name, count in sorted(injected.items()))))
    else:
        parts.append(Text("No fault has been injected since the site started."))
    return Group(*parts)


def catalogue_and_listing(data: Mapping[str, Any], source: str) -> RenderableType:
    """``faults catalogue`` on a running site: the catalogue, then the active faults and injections (``faults list``'s
    data carries both)."""
    return Group(catalogue_tables(data["catalogue"], source), Text(""), listing(data))


def switched_on(fault: Mapping[str, Any]) -> RenderableType:
    """``faults set``: the fault now on, as a one-row table."""
    return active_table([fault], title="Switched on")


def cleared(data: Mapping[str, Any], what: str) -> RenderableType:
    """``faults clear`` / ``faults reset``: the faults switched off, or a line saying none was on."""
    faults = list(data.get("cleared", []))
    if not faults:
        return Text(f"{what}: no fault was active.")
    return active_table(faults, title=f"{what}: switched off")
