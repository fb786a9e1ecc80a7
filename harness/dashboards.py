"""Prometheus and Grafana for the harness: the scrape config rendered from a site manifest, Debian's ``prometheus`` run on
loopback, and every PromQL expression the dashboards and recording rules hold (for ``cmg-harness dashboards``).

Importing this module needs neither Locust nor a Prometheus binary; only :func:`start_prometheus` runs one.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from harness.units import format_prometheus_duration, parse_prometheus_duration
from mock_site.manifest import ManifestError, SiteManifest

__all__ = [
    "CLIENT_METRICS",
    "DASHBOARDS_DIR",
    "GRAFANA_BUILTINS",
    "LOCUST_JOB",
    "RULES_TEST_FILE",
    "RULE_FILES",
    "SITE_JOB",
    "DashboardError",
    "Expression",
    "PrometheusError",
    "PrometheusServer",
    "dashboard_expressions",
    "find_prometheus",
    "find_promtool",
    "instant_query",
    "iter_panels",
    "load_dashboards",
    "prometheus_duration",
    "recording_rules",
    "render_prometheus_config",
    "start_prometheus",
    "to_promql",
    "variable_values",
    "write_prometheus_config",
]

#: The checked-in dashboards, the Prometheus config template and the rules (beside the packages in a source checkout).
DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
CONFIG_TEMPLATE = "prometheus.yml"
#: Rule files, relative to the config directory; the rendered config loads them.
RULE_FILES = ("rules/cmg_recording.yml",)
RULES_TEST_FILE = "rules/cmg_recording_test.yml"
#: The client-side metrics the Locust exporter serves, as the client dashboard expects them: name → (type, labels).
CLIENT_METRICS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "cmg_client_requests_total": ("counter", ("name", "result")),
    "cmg_client_request_duration_seconds": ("histogram", ("name",)),
    "cmg_client_lifecycle_stage_seconds": ("histogram", ("stage",)),
    "cmg_client_outcomes_total": ("counter", ("reason", "verdict")),
    "cmg_client_devices_active": ("gauge", ()),
    "cmg_client_renewals_total": ("counter", ()),
    "cmg_client_service_seconds": ("histogram", ("kind", "name")),
    "cmg_client_lateness_seconds": ("histogram", ("kind", "name")),
    "cmg_client_corrected_seconds": ("histogram", ("kind", "name")),
}
SITE_JOB = "cmg-site"
LOCUST_JOB = "cmg-harness-locust"
DEFAULT_SCRAPE_INTERVAL = "5s"

#: Values for Grafana's built-in variables when an expression is run outside Grafana.
GRAFANA_BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# ${name}, ${name:format}, $name and [[name]]: the spellings Grafana interpolates.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.DOTALL)


class DashboardError(ValueError):
    """A manifest, target, interval, dashboard or expression is unusable; the message names the bad value."""


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or answered a query with an error."""


# ---- scrape configuration ----------------------------------------------------------------------------------------


def prometheus_duration(value: float | str) -> str:
    """A Prometheus duration (``"5s"``, ``"500ms"``) from seconds or from a duration string, checked."""
    try:
        if isinstance(value, str):
            return parse_prometheus_duration(value)
        return format_prometheus_duration(value)
    except ValueError as error:
        raise DashboardError(str(error)) from None


@dataclass(frozen=True)
class _Target:
    scheme: str
    address: str
    path: str


def _target(url: str, what: str) -> _Target:
    """One scrape target from ``http(s)://host:port/path`` or ``host:port`` (path ``/metrics``)."""
    if not isinstance(url, str) or not url:
        raise DashboardError(f"{what} must be a URL or host:port, got {url!r}")
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.query:
        raise DashboardError(f"{what} must be http(s)://host:port[/path] or host:port, got {url!r}")
    return _Target(parsed.scheme, parsed.netloc, parsed.path or "/metrics")


def _jobs(base: Mapping[str, Any], targets: Iterable[_Target], ca_file: str | None) -> list[dict[str, Any]]:
    """One scrape job per scheme and path (the first keeps the template's name), duplicates dropped."""
    groups: dict[tuple[str, str], list[str]] = {}
    for target in targets:
        addresses = groups.setdefault((target.scheme, target.path), [])
        if target.address not in addresses:
            addresses.append(target.address)
    if not groups:
        return [dict(base, static_configs=[{"targets": []}])]
    jobs = []
    for index, ((scheme, path), addresses) in enumerate(groups.items()):
        job = dict(base)
        job["job_name"] = base["job_name"] if index == 0 else f"{base['job_name']}-{index + 1}"
        job["scheme"] = scheme
        job["metrics_path"] = path
        job["static_configs"] = [{"targets": addresses}]
        if scheme == "https" and ca_file:
            job["tls_config"] = {"ca_file": ca_file}
        jobs.append(job)
    return jobs


def render_prometheus_config(
    manifest: SiteManifest | Mapping[str, Any],
    locust_targets: Iterable[str] = (),
    *,
    scrape_interval: float | str = DEFAULT_SCRAPE_INTERVAL,
    evaluation_interval: float | str | None = None,
    template: Path | None = None,
) -> str:
    """``prometheus.yml`` for a running site (its ``metrics_urls``) and Locust exporters (``host:port`` or URLs).

    (A decoded ``site.json`` mapping is still taken, and checked as :class:`SiteManifest` reads one.)
    """
    try:
        manifest = SiteManifest.coerce(manifest)
    except ManifestError as error:
        raise DashboardError(str(error)) from None
    if not manifest.metrics_urls:
        raise DashboardError("site manifest has no metrics_urls")
    site_targets = [_target(item.url, f"metrics URL of role {item.role!r}") for item in manifest.metrics_urls]
    if isinstance(locust_targets, str):
        locust_targets = (locust_targets,)
    client_targets = [_target(url, "Locust exporter target") for url in locust_targets]
    interval = prometheus_duration(scrape_interval)
    config = yaml.safe_load((template or DASHBOARDS_DIR / CONFIG_TEMPLATE).read_text())
    # A scrape may not outlast its interval, or Prometheus refuses the config.
    config["global"] = dict(config.get("global") or {}, scrape_interval=interval, scrape_timeout=interval,
                            evaluation_interval=prometheus_duration(evaluation_interval or interval))
    by_name = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in (SITE_JOB, LOCUST_JOB):
        if name not in by_name:
            raise DashboardError(f"config template lacks the scrape job {name!r}")
    ca_file = str(manifest.ca_file)
    config["scrape_configs"] = (_jobs(by_name[SITE_JOB], site_targets, ca_file)
                                + _jobs(by_name[LOCUST_JOB], client_targets, None)
                                + [job for name, job in by_name.items() if name not in (SITE_JOB, LOCUST_JOB)])
    header = "# Rendered by harness.dashboards.render_prometheus_config from the site manifest; do not edit.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def write_prometheus_config(config_dir: Path, manifest: SiteManifest | Mapping[str, Any],
                            locust_targets: Iterable[str] = (),
                            **options: Any) -> Path:
    """Write the rendered ``prometheus.yml`` and the rule files it loads into ``config_dir``; returns the config path."""
    config_dir = Path(config_dir)
    text = render_prometheus_config(manifest, locust_targets, **options)
    for rule_file in RULE_FILES:
        (config_dir / rule_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DASHBOARDS_DIR / rule_file, config_dir / rule_file)
    path = config_dir / CONFIG_TEMPLATE
    path.write_text(text)
    return path


# ---- running Prometheus --------------------------------------------------------------------------------------------


def find_prometheus() -> str | None:
    """The ``prometheus`` binary on PATH (Debian's package puts it in /usr/bin), or None."""
    return shutil.which("prometheus")


def find_promtool() -> str | None:
    """The ``promtool`` binary on PATH, or None."""
    return shutil.which("promtool")


def instant_query(url: str, expr: str, *, at: float | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The result of an instant query (at epoch ``at``, default now) on the Prometheus HTTP API at ``url``."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        # Prometheus answers a bad query with 400 and a JSON body that says why.
        try:
            body = json.loads(error.read())
        except ValueError:
            raise PrometheusError(f"query {expr!r} failed: HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        raise PrometheusError(f"query {expr!r} failed: {error}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
    result = body["data"]["result"]
    # A scalar or string result is a [time, value] pair, not a list of series: count it as one sample.
    return result if body["data"]["resultType"] in ("vector", "matrix") else [{"value": result}]


@dataclass
class PrometheusServer:
    """A Prometheus process this harness started; stop it with :meth:`stop` (or use it as a context manager)."""

    process: subprocess.Popen[bytes]
    url: str
    config_file: Path
    storage_dir: Path
    log_file: Path
    _log: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def query(self, expr: str, *, at: float | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        """An instant query (at epoch ``at``, default now); a failed query raises PrometheusError."""
        return instant_query(self.url, expr, at=at, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this process (its PID only): SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_prometheus(config_dir: Path, *, binary: str | None = None, host: str = "127.0.0.1", port: int = 0,
                     storage_dir: Path | None = None, retention: str = "2h", ready_timeout: float = 30.0,
                     attempts: int = 3) -> PrometheusServer:
    """Run ``prometheus`` on ``config_dir/prometheus.yml``, listening on ``host:port`` (0: a free port), until ready."""
    resolved = shutil.which(binary) if binary else find_prometheus()
    if resolved is None:
        raise PrometheusError(f"prometheus binary {binary or 'prometheus'!r} not found (Debian: apt-get install "
                              "prometheus)")
    config_dir = Path(config_dir)
    config_file = config_dir / CONFIG_TEMPLATE
    if not config_file.is_file():
        raise DashboardError(f"no prometheus.yml in {str(config_dir)!r} (write one with write_prometheus_config)")
    storage = Path(storage_dir) if storage_dir is not None else config_dir / "data"
    storage.mkdir(parents=True, exist_ok=True)
    log_file = config_dir / "prometheus.log"
    failure = ""
    # A port chosen free can be taken before Prometheus binds it; then try another.
    for _ in range(attempts if port == 0 else 1):
        listen_port = port or _free_port(host)
        log = log_file.open("ab")
        process = subprocess.Popen(
            [resolved, f"--config.file={config_file}", f"--storage.tsdb.path={storage}",
             f"--web.listen-address={host}:{listen_port}", f"--storage.tsdb.retention.time={retention}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        server = PrometheusServer(process, f"http://{host}:{listen_port}", config_file, storage, log_file, log)
        failure = _wait_ready(server, ready_timeout)
        if not failure:
            return server
        server.stop()
        if "address already in use" not in failure:
            break
    raise PrometheusError(f"prometheus did not start: {failure}")


def _wait_ready(server: PrometheusServer, timeout: float) -> str:
    """Poll ``/-/ready`` until it answers 200; returns "" when ready, else why not (with the log's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with status {server.process.returncode}: {_tail(server.log_file)}"
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1.0) as response:
                if response.status == 200:
                    return ""
        except OSError:
            pass
        time.sleep(0.1)
    return f"not ready after {timeout:g} s: {_tail(server.log_file)}"


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---- the expressions the dashboards and rules hold -----------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it lives (``source``: a file; ``where``: panel, annotation, variable or rule)."""

    source: str
    where: str
    expr: str


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` dashboard in ``directory``, by file name; a file that is not a JSON object raises."""
    dashboards = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            dashboard = json.loads(path.read_text())
        except ValueError as error:
            raise DashboardError(f"dashboard {path.name!r} is not valid JSON: {error}") from None
        if not isinstance(dashboard, dict):
            raise DashboardError(f"dashboard {path.name!r} is not a JSON object")
        dashboards[path.name] = dashboard
    return dashboards


def iter_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows and the panels folded inside collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_expressions(name: str, dashboard: Mapping[str, Any]) -> list[Expression]:
    """The PromQL of every panel target, annotation and query variable of one dashboard (Grafana variables kept)."""
    found = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append(Expression(name, f"panel {panel.get('id')} {panel.get('title')!r} target "
                                              f"{target.get('refId')}", target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            found.append(Expression(name, f"annotation {annotation.get('name')!r}", annotation["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query") if isinstance(query, Mapping) else query
            if text:
                found.append(Expression(name, f"variable {variable.get('name')!r}", text))
    return found


def recording_rules(path: Path | None = None) -> list[Expression]:
    """Every recording rule of a rules file: ``where`` names the record (and its static labels)."""
    path = path or DASHBOARDS_DIR / RULE_FILES[0]
    found = []
    for group in yaml.safe_load(Path(path).read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted((rule.get("labels") or {}).items()))
                found.append(Expression(Path(path).name, rule["record"] + (f"{{{labels}}}" if labels else ""),
                                        rule["expr"]))
    return found


def variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """A value for each dashboard variable that matches everything it may match (``All`` for multi-value ones)."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable.get("name")
        if variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        elif variable.get("type") == "datasource":
            values[name] = "prometheus"
        else:
            current = variable.get("current") or {}
            values[name] = str(current.get("value") or variable.get("query") or "")
    return values


def to_promql(expr: str, values: Mapping[str, str] | None = None) -> str:
    """``expr`` with Grafana variables replaced (built-ins and ``values``) and ``label_values()`` made a PromQL query."""
    known = {**GRAFANA_BUILTINS, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in known:
            raise DashboardError(f"unknown Grafana variable {match.group(0)!r} in {expr!r}")
        return known[name]

    text = _VARIABLE.sub(replace, expr)
    label_values = _LABEL_VALUES.match(text)
    if label_values:
        label = label_values.group(2)
        selector = label_values.group(1) or "{" + label + '!=""}'
        # What Grafana asks for with label_values: the label's values on the selected series.
        return f"count by ({label}) ({selector})"
    return text
