"""Policy requests/s through CMG → connection point → MP against the same server's trivial endpoint, side by side.

The site runs in one process pinned to core 0; hey (Debian package ``hey``) drives it from core 1 with keep-alive TLS.
Each mode is measured in the same run:

- ``trivial``      a raw ASGI endpoint answering 200 "ok" on the same TLS server stack (the ceiling of one core);
- ``same-size``    a raw ASGI endpoint on that stack that takes the policy request's very bytes (headers, token, body)
                   and answers with as many bytes as the policy reply: what moving a policy poll's bytes through one
                   TLS server costs with no site logic at all, so the policy figure can be split into bytes and logic;
- ``policy-inproc`` a RequestAssignments CCM_POST with a valid CCM token, CMG → CP → MP called in-process;
- ``policy-https``  the same through real HTTPS hops (CMG → CP over TLS, CP → MP over mutual TLS), all on one core;
- ``policy-channel`` the same with the CMG → CP hop down the channel the CP opened to the CMG (the site's default);
- and the in-process chain once more with Prometheus instrumentation swapped for no-ops, for its overhead.

Two figures per mode: requests/s, and requests per CPU second of the site process (read from /proc over each
measurement). The second is the one to compare on a shared machine: when hey on its one core cannot saturate the trivial
endpoint, or another job takes part of core 0, the site is not at 100 % CPU and requests/s understates what it can do,
while its cost per request is unchanged. The site's CPU share during each measurement is printed so you can see which
side was the limit.

Usage: python benchmarks/site_chain.py [--seconds 5] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def serve(state_dir: str, inprocess: bool, metrics: bool, cp_hop: str, ready: multiprocessing.Queue[dict],
          stop: multiprocessing.Event) -> None:
    os.sched_setaffinity(0, {0})
    from mock_site.asgi import respond
    from mock_site.config import SiteConfig
    from mock_site.server import Listener, ServerGroup
    from mock_site.site import Site

    replies: dict[int, bytes] = {}

    async def trivial(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        if scope["path"] != "/sized":
            await respond(send, 200, b"ok")
            return
        more = True
        while more:  # take the whole request body, as the CMG does
            message = await receive()
            more = message.get("more_body", False)
        size = int(scope["query_string"].decode().partition("=")[2])
        reply = replies.get(size)
        if reply is None:
            reply = replies[size] = b"x" * size
        await respond(send, 200, reply)

    async def main() -> None:
        site = Site(SiteConfig(state_dir=Path(state_dir), inprocess_hops=inprocess, metrics_enabled=metrics,
                               cp_hop=cp_hop),
                    logs_enabled=False)
        await site.start()
        bundle = site.pki.cmg_server_cert(("127.0.0.1", "localhost"), crl_url=site.manifest().crl_url)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        bundle.configure_server_context(ctx)
        group = ServerGroup([Listener("trivial", trivial, ctx)])
        await group.start()
        ready.put((site.manifest(), group.listeners[0].url))
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await group.stop()
        await site.stop()

    asyncio.run(main())


@dataclass(frozen=True)
class Measurement:
    """One load: requests/s as hey saw it, and the site process's CPU seconds per wall second over it."""

    rate: float
    cpu: float

    @property
    def per_cpu_second(self) -> float:
        """Requests per CPU second of the site: its cost per request, whatever share of the core it got."""
        return self.rate / max(self.cpu, 1e-9)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, seconds: int, connections: int, *, method: str = "GET", body_file: str | None = None,
         headers: dict[str, str] | None = None) -> float:
    """Requests/s from ``hey`` on core 1 (Go's client takes the CCM_POST verb, which wrk's request check refuses)."""
    command = ["taskset", "-c", "1", "hey", "-cpus", "1", "-c", str(connections), "-z", f"{seconds}s", "-m", method]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if body_file:
        command += ["-D", body_file]
    finished = subprocess.run(command + [url], capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"hey failed on {url}: {finished.stdout} {finished.stderr}")
    output = finished.stdout
    statuses = re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)
    bad = {code: count for code, count in statuses if code != "200"}
    if bad or "Error distribution" in output:
        raise SystemExit(f"{url}: answers other than 200: {bad}\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def policy_request(manifest: Any, workdir: Path) -> tuple[str, str, dict[str, str], int]:
    """Register one device; return the URL, body file and headers of a policy poll with its CCM token, and the size of
    the policy reply's body."""
    from cmg_protocol import clientauth, envelope, messages, urlmap
    from mock_site.testing import SiteClient, signing_identity_for_tests

    with SiteClient(manifest) as client:
        _, smsid, token = client.register_device()
        check = client.policy(token, smsid)
        assert check.status_code == 200, check.text
        reply_bytes = len(check.content)
    request = messages.RequestAssignments(client_id=smsid, fqdn="bench.contoso.com", netbios_name="BENCH", sid="",
                                          site_code=manifest.site_code)
    # MP_PolicyManager takes signed requests only: the clientauth hook, with the key SiteClient registered.
    key, _ = signing_identity_for_tests()
    hook = clientauth.hook_properties(key, smsid, envelope.encoded_body(request.to_xml(), True)[1], "BENCH")
    header = envelope.MessageHeader(target_endpoint="MP_PolicyManager", source_id=smsid, source_host="BENCH",
                                    message_id="{" + str(uuid.uuid4()).upper() + "}", sent_time="2026-01-01T00:00:00Z",
                                    client_auth=hook)
    body_file = workdir / "policy.body"
    body_file.write_bytes(envelope.encode_message(header, request.to_xml()))
    url = manifest.cmg_url + urlmap.server_auth_path(manifest.role_id, "ccm_system_tokenauth/request")
    return (url, str(body_file), {"Content-Type": envelope.CONTENT_TYPE, "Authorization": f"Bearer {token}"},
            reply_bytes)


class SiteServer:
    """One benchmark site in its own process (pinned to core 0), with a registered device ready to poll."""

    def __init__(self, inprocess: bool, metrics: bool, connections: int, cp_hop: str = "https") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-chain-"))
        self.connections = connections
        ready: multiprocessing.Queue[tuple[Any, str]] = multiprocessing.Queue()
        self.stop_event = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=serve, args=(str(self.workdir / "state"), inprocess, metrics, cp_hop, ready, self.stop_event))
        self.process.start()
        self.manifest, self.trivial_url = ready.get(timeout=60)
        url, body_file, headers, self.reply_bytes = policy_request(self.manifest, self.workdir)
        self.url = url
        self.poll = {"method": "CCM_POST", "body_file": body_file, "headers": headers}
        load(url, 2, connections, **self.poll)  # warm-up: token cache, connection pools

    def policy(self, seconds: int) -> Measurement:
        return self._measured(lambda: load(self.url, seconds, self.connections, **self.poll))

    def trivial(self, seconds: int) -> Measurement:
        return self._measured(lambda: load(self.trivial_url + "/", seconds, self.connections))

    def same_size(self, seconds: int) -> Measurement:
        url = f"{self.trivial_url}/sized?bytes={self.reply_bytes}"
        return self._measured(lambda: load(url, seconds, self.connections, **self.poll))

    def _measured(self, run: Callable[[], float]) -> Measurement:
        assert self.process.pid is not None
        cpu_before, wall_before = cpu_seconds(self.process.pid), time.monotonic()
        rate = run()
        cpu = (cpu_seconds(self.process.pid) - cpu_before) / (time.monotonic() - wall_before)
        return Measurement(rate, cpu)

    def close(self) -> None:
        self.stop_event.set()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per mode, alternated; medians reported")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--modes", nargs="*", default=None,
                        help="only these modes (labels as printed, e.g. 'HTTPS hops' 'CP channel hop')")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("benchmarks/site_chain.py needs hey (apt-get install hey)")
    modes = {"in-process hops": (True, True, "https"), "in-process, no metrics": (True, False, "https"),
             "HTTPS hops": (False, True, "https"), "CP channel hop": (False, True, "channel")}
    if args.modes:
        modes = {label: mode for label, mode in modes.items() if label in args.modes}
    servers = {label: SiteServer(inprocess, metrics, args.connections, cp_hop)
               for label, (inprocess, metrics, cp_hop) in modes.items()}
    samples: dict[str, dict[str, list[Measurement]]] = {label: {"policy": [], "trivial": [], "same-size": []}
                                                           for label in modes}
    try:
        # Alternate the modes round by round, so drift on a shared machine hits all of them alike.
        for _ in range(args.rounds):
            for label, server in servers.items():
                samples[label]["policy"].append(server.policy(args.seconds))
                samples[label]["trivial"].append(server.trivial(args.seconds))
                samples[label]["same-size"].append(server.same_size(args.seconds))
    finally:
        for server in servers.values():
            server.close()
    results = {label: {kind: statistics.median(m.rate for m in values) for kind, values in figures.items()}
               for label, figures in samples.items()}
    per_cpu = {label: {kind: statistics.median(m.per_cpu_second for m in values) for kind, values in figures.items()}
               for label, figures in samples.items()}
    cpu_share = {label: {kind: statistics.median(m.cpu for m in values) for kind, values in figures.items()}
                 for label, figures in samples.items()}
    # The ratio is taken within each round (policy and trivial measured back to back) and then the median of those:
    # on a shared machine the load drifts between rounds, and a ratio of two medians from different rounds mixes it in.
    ratios = {label: statistics.median(policy.rate / trivial.rate for policy, trivial in
                                       zip(figures["policy"], figures["trivial"], strict=True))
              for label, figures in samples.items()}
    cpu_ratios = {label: statistics.median(policy.per_cpu_second / trivial.per_cpu_second for policy, trivial in
                                           zip(figures["policy"], figures["trivial"], strict=True))
                  for label, figures in samples.items()}
    # The same against an endpoint that moves the policy poll's bytes and does nothing else: what is left below 100 %
    # is the site's own logic (and, with real hops, the hops' extra TLS traffic).
    same_size_ratios = {label: statistics.median(policy.per_cpu_second / sized.per_cpu_second for policy, sized in
                                                 zip(figures["policy"], figures["same-size"], strict=True))
                        for label, figures in samples.items()}
    for label, figures in results.items():
        print(f"{label:22s} trivial endpoint {figures['trivial']:9,.0f} req/s   policy CCM_POST through "
              f"CMG→CP→MP {figures['policy']:8,.0f} req/s   ratio {ratios[label]:5.1%}   (median of {args.rounds} "
              f"per-round ratios)", flush=True)
        print(f"{'':22s} per site CPU second: trivial {per_cpu[label]['trivial']:9,.0f}   policy "
              f"{per_cpu[label]['policy']:8,.0f}   ratio {cpu_ratios[label]:5.1%}   (site CPU share: trivial "
              f"{cpu_share[label]['trivial']:.0%}, policy {cpu_share[label]['policy']:.0%})", flush=True)
        server_reply = servers[label].reply_bytes
        print(f"{'':22s} same-size endpoint (the poll's request bytes in, {server_reply:,} bytes out, no logic): "
              f"{per_cpu[label]['same-size']:9,.0f} per site CPU second; policy is {same_size_ratios[label]:5.1%} "
              f"of it", flush=True)
    if "in-process hops" in results and "in-process, no metrics" in results:
        with_metrics = results["in-process hops"]["policy"]
        without = results["in-process, no metrics"]["policy"]
        print(f"instrumentation overhead on the policy chain: {1 - with_metrics / without:+.1%} "
              f"({with_metrics:,.0f} vs {without:,.0f} req/s)")
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "connections": args.connections,
                      "seconds": args.seconds, "rounds": args.rounds, "results": results, "ratios": ratios,
                      "per_cpu_second": per_cpu, "cpu_ratios": cpu_ratios, "same_size_ratios": same_size_ratios,
                      "cpu_share": cpu_share,
                      "samples": {label: {kind: [[m.rate, m.cpu] for m in values] for kind, values in figures.items()}
                                  for label, figures in samples.items()}}))


if __name__ == "__main__":
    main()
