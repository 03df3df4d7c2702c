"""Python 3.14's task introspection: the graph of tasks awaiting one another, read in the process
(`asyncio.capture_call_graph`) and from another one (`python -m asyncio ps` and `pstree`, which
read the tasks of a thread's running loop out of its memory). ferroloop steps CPython's own tasks,
some of them without a handle (`ferroloop._task_calls`), so both must see what asyncio shows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 14), reason="task call graphs are new in Python 3.14"
)


def test_capture_call_graph_follows_the_awaiting_tasks(loop):
    async def leaf():
        await asyncio.sleep(0)
        return asyncio.capture_call_graph()

    async def middle():
        async with asyncio.TaskGroup() as group:
            task = group.create_task(leaf(), name="leaf")
        return task.result()

    async def main():
        return await asyncio.create_task(middle(), name="middle")

    graph = loop.run_until_complete(main())

    def names(node):
        return [entry.frame.f_code.co_name for entry in node.call_stack]

    assert graph.future.get_name() == "leaf"
    assert names(graph) == ["leaf"]
    (middle_node,) = graph.awaited_by
    assert middle_node.future.get_name() == "middle"
    assert names(middle_node)[-1] == "middle"
    (main_node,) = middle_node.awaited_by
    assert names(main_node) == ["main"]
    assert main_node.awaited_by == ()


CHILD = """
import asyncio
import {module}

async def leaf():
    print("ready", flush=True)
    await asyncio.sleep(60)

async def middle():
    async with asyncio.TaskGroup() as group:
        group.create_task(leaf(), name="leaf-task")

async def main():
    await asyncio.create_task(middle(), name="middle-task")

asyncio.run(main(), loop_factory={factory})
"""


@pytest.mark.parametrize(
    "module, factory",
    [("asyncio", "asyncio.SelectorEventLoop"), ("ferroloop", "ferroloop.new_event_loop")],
    ids=["asyncio", "ferroloop"],
)
def test_asyncio_ps_and_pstree_read_the_running_tasks(module, factory):
    program = textwrap.dedent(CHILD).format(module=module, factory=factory)
    command_line = [sys.executable, "-c", program]
    with subprocess.Popen(command_line, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            ps, pstree = (
                subprocess.run(
                    [sys.executable, "-m", "asyncio", command, str(child.pid)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                for command in ("ps", "pstree")
            )
        finally:
            child.kill()
    if "ermission" in ps.stderr:
        pytest.skip(f"reading another process's memory is not allowed here: {ps.stderr[-200:]}")
    assert ps.returncode == 0, ps.stderr
    rows = {line.split()[2]: line for line in ps.stdout.splitlines()[2:]}
    assert "sleep -> leaf" in rows["leaf-task"]
    *_, awaiter_name, _awaiter_id = rows["leaf-task"].split()
    assert awaiter_name == "middle-task"
    assert "TaskGroup.__aexit__ -> middle" in rows["middle-task"]
    assert pstree.returncode == 0, pstree.stderr
    tree = [line.strip("└─│ ") for line in pstree.stdout.splitlines()]
    assert tree.index("(T) middle-task") < tree.index("(T) leaf-task")
