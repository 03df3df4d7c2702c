"""What the idle spin costs: a ferroloop UDP echo server's CPU at a paced load, spin on and off.

The benchmark rows load servers as fast as they answer; this script sends datagrams at a fixed
interval instead, from a client on the other core (as the two-core rows place it), and reports
the share of a core the server used (user + system time over wall time) with
`FERROLOOP_IDLE_SPIN` unset and `=0`, the two runs interleaved. It shows where the spin
(src/core/idle_spin.rs) turns waits into CPU time.

    .venv-bench/bin/python benchmarks/idle_spin_cost.py [--intervals 20,40,80] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

from workloads.placement import PLACEMENTS, on_cpus

# The server on one core, its client on the other, as the benchmark's two-core rows place them.
SERVER_CPUS, CLIENT_CPUS = PLACEMENTS["two cores"]
MESSAGE = b"x" * 64


def serve(seconds: float) -> None:
    """Echoes datagrams; prints its port, then, after `seconds` of load, its CPU share."""
    import ferroloop

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        print(transport.get_extra_info("sockname")[1], flush=True)
        await asyncio.sleep(0.5)  # the client starts and the window settles
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.sleep(seconds)
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(f"{cpu / wall:.4f}", flush=True)

    ferroloop.run(main())


def send(port: int, interval_us: float, seconds: float) -> None:
    """Sends a datagram every `interval_us` (busy-waiting between them) and drops the echoes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    step, due = interval_us / 1e6, time.perf_counter()
    end = due + seconds
    while due < end:
        due += step
        while time.perf_counter() < due:
            pass
        sock.sendto(MESSAGE, ("127.0.0.1", port))
        try:
            while True:
                sock.recv(128)
        except BlockingIOError:
            pass


def measure(interval_us: float, seconds: float, spin: bool) -> float:
    env = dict(os.environ)
    if spin:
        env.pop("FERROLOOP_IDLE_SPIN", None)
    else:
        env["FERROLOOP_IDLE_SPIN"] = "0"
    me = os.path.abspath(__file__)
    server = subprocess.Popen(
        on_cpus(SERVER_CPUS, [sys.executable, me, "--serve", str(seconds)]),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = server.stdout.readline().strip()
    client = ["--send", port, str(interval_us), str(seconds + 1)]
    subprocess.run(on_cpus(CLIENT_CPUS, [sys.executable, me, *client]), check=True)
    share = float(server.stdout.readline())
    server.wait()
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", default="20,40,80,200,1000", help="microseconds")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--send", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve)
    if args.send:
        return send(int(args.send[0]), float(args.send[1]), float(args.send[2]))
    print("| interval | datagrams/s | server CPU share, spin | spin off | ratio |")
    print("|---|---|---|---|---|")
    for interval in (float(i) for i in args.intervals.split(",")):
        shares = {True: [], False: []}
        for _ in range(args.reps):
            for spin in (True, False):
                shares[spin].append(measure(interval, args.seconds, spin))
        on, off = statistics.median(shares[True]), statistics.median(shares[False])
        rate = f"{1e6 / interval:,.0f}"
        print(f"| {interval:g} us | {rate} | {on:.2f} | {off:.2f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
