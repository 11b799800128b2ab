"""Graph algorithms of the block data flow: execution order and algebraic loops.

Pure functions over nodes ``0..n-1`` (a block's position in the file) and edges
``u -> v`` (block v reads a signal block u writes); the semantic pass maps names to
numbers and back. Every result is deterministic and favours file order, so the same
file always gives the same order and the same error messages.

Execution order (why it is built this way)
------------------------------------------
Without loops the order is the topological order of the graph, ties broken by file
order (Kahn's algorithm with a heap on the node number), so a plant without data
dependencies runs in the order it is written.

A feedback loop through a *delay* node D (its outputs come from state of earlier
cycles) keeps every edge except those that would close a cycle: the edges out of delay
nodes are first all left out (the rest must be acyclic, else there is an algebraic
loop), then added back one by one in file order (by writer, then reader) unless the
reader already reaches D. So a unit delay placed in a chain (not in a loop) still
runs before its readers, and its readers see this cycle's output, as written.

Algebraic loops
---------------
A cycle among the edges that are left once those out of delay nodes are dropped. One
loop is named per strongly connected component (Tarjan's algorithm, iterative so a long
chain cannot exhaust Python's stack): the shortest cycle through the component's
first node, found breadth first with neighbours in ascending order; loops are listed
in the order of their first node.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Adjacency = list[list[int]]


@dataclass(frozen=True, slots=True)
class Flow:
    """The outcome of :func:`execution_order`: an order, or the loops that forbid one."""

    order: list[int]
    loops: list[list[int]]


def execution_order(n: int, edges: Iterable[tuple[int, int]], delay: Sequence[bool]) -> Flow:
    """Order nodes ``0..n-1`` so that every writer runs before its readers.

    ``edges`` may repeat; ``delay[k]`` is True for a node whose outputs do not depend on
    this cycle's inputs. With an algebraic loop ``order`` is empty and ``loops`` lists
    each loop (node numbers in flow order, starting at its first node in the file).
    """
    strict: Adjacency = [[] for _ in range(n)]
    deferred: list[tuple[int, int]] = []
    for u, v in sorted(set(edges)):
        if delay[u]:
            deferred.append((u, v))
        else:
            strict[u].append(v)
    loops = cycles(strict)
    if loops:
        return Flow([], loops)
    for u, v in deferred:
        if u != v and not reaches(strict, v, u):
            strict[u].append(v)
    return Flow(toposort(strict), [])


def toposort(adj: Adjacency) -> list[int]:
    """Kahn's algorithm; among ready nodes the smallest (earliest in the file) first.
    Nodes on a cycle are left out."""
    indeg = [0] * len(adj)
    for vs in adj:
        for w in vs:
            indeg[w] += 1
    ready = [v for v in range(len(adj)) if indeg[v] == 0]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        v = heapq.heappop(ready)
        out.append(v)
        for w in adj[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(ready, w)
    return out


def reaches(adj: Adjacency, src: int, dst: int) -> bool:
    """Whether a path leads from ``src`` to ``dst`` (``src == dst`` counts)."""
    seen = {src}
    todo = [src]
    while todo:
        v = todo.pop()
        if v == dst:
            return True
        for w in adj[v]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


def cycles(adj: Adjacency) -> list[list[int]]:
    """One cycle per strongly connected component with a cycle, each starting at its
    smallest node (the first in file order); components in file order."""
    out: list[list[int]] = []
    for comp in _components(adj):
        start = min(comp)
        if len(comp) == 1 and start not in adj[start]:
            continue
        out.append(_cycle_from(adj, start, set(comp)))
    return sorted(out, key=lambda c: c[0])


def _components(adj: Adjacency) -> list[list[int]]:
    """The strongly connected components (Tarjan, with an explicit stack)."""
    n = len(adj)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            v, child = work.pop()
            if child == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            recurse = False
            for k in range(child, len(adj[v])):
                w = adj[v][k]
                if index[w] == -1:
                    work.append((v, k + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if on_stack[w]:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                comps.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return comps


def _cycle_from(adj: Adjacency, start: int, members: set[int]) -> list[int]:
    """A shortest cycle through ``start`` inside ``members`` (breadth first)."""
    parent: dict[int, int] = {}
    frontier = [start]
    while frontier:
        nxt: list[int] = []
        for v in frontier:
            for w in sorted(adj[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]  # pragma: no cover - start is on a cycle by construction
