"""When does work start? `create_task` versus a bare coroutine, on the loop you choose.

    python demo/create_task_demo.py ferroloop
    python demo/create_task_demo.py asyncio

A task is scheduled the moment it is created: it gets its first turn as soon as the creating code
yields to the loop, whether or not anyone awaits it yet. A coroutine object is inert: nothing in
its body runs until something awaits it or `gather` wraps it in a task.
"""

from __future__ import annotations

import asyncio
import sys
import time

events: list[str] = []


def log(line: str) -> None:
    events.append(line)
    print(line, flush=True)


async def brew(name: str) -> str:
    log(f"  {name}: started")
    await asyncio.sleep(0.01)
    log(f"  {name}: finished")
    return name


async def with_tasks() -> None:
    log("create_task: scheduling three tasks")
    tasks = [asyncio.create_task(brew(f"task {i}")) for i in range(3)]
    log("create_task: doing other work (the tasks run meanwhile)")
    await asyncio.sleep(0.05)
    log("create_task: now gathering")
    results = await asyncio.gather(*tasks)
    log(f"create_task: gathered {results}")


async def with_coroutines() -> None:
    log("coroutines: creating three coroutine objects")
    coros = [brew(f"coro {i}") for i in range(3)]
    log("coroutines: doing other work (nothing runs meanwhile)")
    await asyncio.sleep(0.05)
    log("coroutines: now gathering")
    results = await asyncio.gather(*coros)
    log(f"coroutines: gathered {results}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    log(f"loop: {type(loop).__module__}.{type(loop).__name__}")
    await with_tasks()
    await with_coroutines()


def run_on(loop_name: str) -> list[str]:
    events.clear()
    start = time.perf_counter()
    if loop_name == "ferroloop":
        import ferroloop

        ferroloop.run(main())
    elif loop_name == "asyncio":
        asyncio.run(main())
    else:
        raise SystemExit(f"unknown loop {loop_name!r}: choose ferroloop or asyncio")
    print(f"({loop_name}: {time.perf_counter() - start:.3f} s)", flush=True)
    return list(events)


if __name__ == "__main__":
    run_on(sys.argv[1] if len(sys.argv) > 1 else "ferroloop")
