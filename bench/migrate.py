"""Migration benchmark: a 100k-record BackDocket tenant into the Salesforce simulator.

Both simulators run as their own processes; Salesforce serves HTTPS with a
throwaway CA (trustme) so the peer, simple-salesforce, can drive it as it
drives a real org. Prints end-to-end records/s, load records/s, the journal's
share of the load work, peak RSS, and — as a peer — the same number of Contacts
inserted by simple-salesforce's bulk2 into the same simulator, with the ratio.

    ./dev bench migrate [--records 100000] [--source-rate 20] [--no-files]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import resource
import secrets
import ssl
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import orjson
import psutil
import requests
import trustme
import uvloop
from bench_plan import ADMIN, salesforce_plan
from simple_salesforce import Salesforce

from adapters.backdocket.client import BackDocketConfig
from adapters.secrets import Secret
from service.commands import prepare_org, simulator
from service.logs import configure_logging
from service.migrate import run_migrate


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def peer_insert(url: str, ca: Path, token: str, contacts: int, workdir: Path) -> float:
    """Seconds simple-salesforce's bulk2 takes to insert ``contacts`` Contacts."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "peer-contacts.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["FirstName", "LastName", "Email", "Source_System_ID__c"])
        for i in range(contacts):
            ext = f"peer:{workdir.name}:{i}"
            writer.writerow([f"Peer{i}", f"Contact {i}", f"peer{i}@example.com", ext])
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    sf = Salesforce(instance_url=url, session_id=token, session=session, version="59.0")
    started = time.perf_counter()
    results = sf.bulk2.Contact.insert(csv_file=str(path))
    elapsed = time.perf_counter() - started
    processed = sum(int(r["numberRecordsProcessed"]) for r in results)
    failed = sum(int(r["numberRecordsFailed"]) for r in results)
    if processed != contacts or failed:
        raise RuntimeError(f"the peer's load went wrong: {results}")
    return elapsed


async def peer_token(url: str, ca: Path, secret: str) -> str:
    """A session id for the peer, from the same OAuth endpoint crmlift uses."""
    tls = ssl.create_default_context(cafile=str(ca))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": "crmlift",
                  "client_secret": secret},
            ssl=tls,
        ) as resp,
    ):  # fmt: skip
        return str(orjson.loads(await resp.read())["access_token"])


async def bench(
    records: int,
    source_rate: float,
    files: bool,
    latency: str,
    log: Path | None,
    peer_contacts: list[int] | None,
) -> None:
    env = {"BENCH_BD_SECRET": secrets.token_urlsafe(16),
           "BENCH_SF_SECRET": secrets.token_urlsafe(16)}  # fmt: skip
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="crmlift-bench-") as tmp:
        work = Path(tmp)
        authority = trustme.CA()
        cert = authority.issue_cert("127.0.0.1")
        ca_path, cert_path, key_path = work / "ca.pem", work / "cert.pem", work / "key.pem"
        authority.cert_pem.write_to_path(str(ca_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))

        bd_args = ("--records", str(records), "--seed", "11", "--dirty", "--latency-ms", latency,
                   "--rate", str(source_rate), "--burst", str(source_rate * 2),
                   "--client-secret-env", "BENCH_BD_SECRET")  # fmt: skip
        async with AsyncExitStack() as stack:
            bd_url = await stack.enter_async_context(simulator("backdocket", *bd_args, env=env))
            source = BackDocketConfig(bd_url, "crmlift", Secret(env["BENCH_BD_SECRET"]))
            schema_path, users_path = await prepare_org(source, work, ADMIN)
            sf_args = ("--schema", str(schema_path), "--users", str(users_path),
                       "--client-secret-env", "BENCH_SF_SECRET", "--tls-cert", str(cert_path),
                       "--tls-key", str(key_path))  # fmt: skip
            sf_url = await stack.enter_async_context(simulator("salesforce", *sf_args, env=env))
            plan = salesforce_plan(
                "bench-migrate",
                work,
                bd_url,
                sf_url,
                source_rate,
                dict(os.environ),
                files=files,
                ca_file=ca_path,
            )
            configure_logging(log or work / "bench.log.jsonl")
            me = psutil.Process()
            cpu_before = {p.pid: _cpu(p) for p in [me, *me.children(recursive=True)]}
            started = time.perf_counter()
            outcome = await run_migrate(plan)
            total = time.perf_counter() - started
            cpu = {
                p.pid: _cpu(p) - cpu_before.get(p.pid, 0.0)
                for p in [me, *me.children(recursive=True)]
            }
            crmlift_cpu = cpu.pop(me.pid)
            crmlift_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            # The peer loads the migration's own number of Contacts, and the
            # tenant's size in Contacts: a flat insert of as many rows as we moved.
            loaded_contacts = next(r for r in outcome.report.rows if r.object == "Contact")
            token = await peer_token(sf_url, ca_path, env["BENCH_SF_SECRET"])
            peers = {}
            for count in peer_contacts or [loaded_contacts.created, records]:
                peers[count] = await asyncio.to_thread(
                    peer_insert, sf_url, ca_path, token, count, work / f"peer-{count}"
                )

    rows = outcome.report.rows
    loaded = sum(r.created + r.updated for r in rows)
    t = outcome.load_timings
    phases = outcome.phase_seconds
    load_rate = loaded / phases["load"]
    state = "on" if files else "off"
    print(f"tenant            {outcome.extract.staged} source records, files {state}")
    print(f"end to end        {total:.1f} s, {outcome.extract.staged / total:.0f} source records/s")
    print(f"extract           {outcome.extract.elapsed:.1f} s at {source_rate:.0f} req/s")
    print(f"prepare, report   schema gate and owners {phases['prepare']:.1f} s, "
          f"reports {phases['report']:.1f} s")  # fmt: skip
    print(f"load              {loaded} records written in {phases['load']:.1f} s "
          f"= {load_rate:.0f} records/s")  # fmt: skip
    print(f"load work         transform {t.get('transform', 0):.1f} s, journal "
          f"{t.get('journal', 0):.1f} s, destination {t.get('destination', 0):.1f} s "
          f"(summed over concurrent batches)")  # fmt: skip
    share = t.get("journal", 0) / max(1e-9, sum(t.values()))
    print(f"journal overhead  {share:.1%} of the load work")
    print(f"peak RSS          {crmlift_rss:.0f} MB (crmlift, before the peer ran)")
    print(f"CPU during run    crmlift {crmlift_cpu:.1f} s, simulators and journal "
          f"{sum(cpu.values()):.1f} s, on {os.cpu_count()} cores in {total:.1f} s")  # fmt: skip
    for count, seconds in peers.items():
        peer_rate = count / seconds
        ratio = load_rate / peer_rate
        print(f"peer              simple-salesforce bulk2: {count} Contacts in {seconds:.1f} s "
              f"= {peer_rate:.0f} records/s; crmlift / peer = {ratio:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--source-rate", type=float, default=20.0)
    parser.add_argument("--latency-ms", default="50-150")
    parser.add_argument("--no-files", action="store_true")
    parser.add_argument("--log", type=Path, help="keep the run's JSON log here")
    parser.add_argument(
        "--peer-contacts",
        type=int,
        action="append",
        help="Contacts the peer inserts; repeatable (default: the migration's Contacts, "
        "then --records)",
    )
    args = parser.parse_args()
    uvloop.run(
        bench(
            args.records,
            args.source_rate,
            not args.no_files,
            args.latency_ms,
            args.log,
            args.peer_contacts,
        )
    )


if __name__ == "__main__":
    main()
