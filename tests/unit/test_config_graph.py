"""The graph algorithms of the block data flow (``petra.config._graph``), on their own.

Nodes are file positions, so "stable" means file order: the same file always gives the
same order and names the same loops in the same words.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from petra.config._graph import cycles, execution_order, reaches, toposort


def adjacency(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in sorted(set(edges)):
        adj[u].append(v)
    return adj


def is_cyclic(n: int, edges: list[tuple[int, int]]) -> bool:
    """Brute force: some node reaches itself through at least one edge."""
    adj = adjacency(n, edges)
    return any(reaches(adj, w, v) for v in range(n) for w in adj[v])


def test_toposort_keeps_file_order_among_ready_nodes() -> None:
    assert toposort(adjacency(4, [])) == [0, 1, 2, 3]
    # 3 must precede 0; 1 and 2 are free: the smallest ready node goes first each time
    assert toposort(adjacency(4, [(3, 0)])) == [1, 2, 3, 0]
    assert toposort(adjacency(5, [(4, 1), (2, 0)])) == [2, 0, 3, 4, 1]
    # a diamond 0 -> {2, 1} -> 3
    assert toposort(adjacency(4, [(0, 2), (0, 1), (2, 3), (1, 3)])) == [0, 1, 2, 3]


def test_toposort_leaves_out_nodes_on_a_cycle() -> None:
    assert toposort(adjacency(3, [(0, 1), (1, 0)])) == [2]


def test_reaches() -> None:
    adj = adjacency(4, [(0, 1), (1, 2)])
    assert reaches(adj, 0, 2) and reaches(adj, 1, 1) and not reaches(adj, 2, 0)
    assert not reaches(adj, 0, 3)


def test_cycles_name_each_loop_from_its_first_node_in_order() -> None:
    assert cycles(adjacency(3, [(0, 1), (1, 2)])) == []
    assert cycles(adjacency(2, [(1, 1)])) == [[1]]  # a block reading its own output
    # two loops: 1 -> 2 -> 3 -> 1 and 0 -> 0; listed by their first node
    assert cycles(adjacency(4, [(1, 2), (2, 3), (3, 1), (0, 0)])) == [[0], [1, 2, 3]]
    # one component with several cycles through 0: the shortest is named
    assert cycles(adjacency(4, [(0, 1), (1, 2), (2, 3), (3, 0), (2, 0)])) == [[0, 1, 2]]
    # a loop that is entered at a later node still starts at its first node in the file
    assert cycles(adjacency(4, [(3, 2), (2, 1), (1, 2)])) == [[1, 2]]


def test_cycles_survive_a_long_chain() -> None:
    """Iterative Tarjan: a 20k-node chain closing on itself needs no deep recursion."""
    n = 20_000
    edges = [(k, k + 1) for k in range(n - 1)] + [(n - 1, 0)]
    (loop,) = cycles(adjacency(n, edges))
    assert loop == list(range(n))


def test_execution_order_without_loops_is_writer_before_reader() -> None:
    flow = execution_order(3, [(2, 0), (2, 0)], [False] * 3)  # a repeated edge counts once
    assert flow.loops == [] and flow.order == [1, 2, 0]


def test_algebraic_loop_gives_no_order() -> None:
    flow = execution_order(3, [(0, 2), (2, 0)], [False] * 3)
    assert flow.order == [] and flow.loops == [[0, 2]]


def test_loop_through_a_delay_node_is_ordered() -> None:
    # 0 reads 2 (a delay), 1 reads 0, 2 reads 1: the loop 0 -> 1 -> 2 -> 0 goes
    # through the delay, so the edge out of it that would close the loop is dropped
    flow = execution_order(3, [(2, 0), (0, 1), (1, 2)], [False, False, True])
    assert flow.loops == [] and flow.order == [0, 1, 2]


def test_delay_node_in_a_chain_still_runs_before_its_readers() -> None:
    # 0 reads 1 (a delay), nothing loops: the edge is kept, the delay runs first
    flow = execution_order(2, [(1, 0)], [False, True])
    assert flow.order == [1, 0]
    # the same delay also in a loop with 2 (2 feeds the delay, reads it back): the edge
    # into 2 would close the loop and is dropped, the edge into 0 is kept
    flow = execution_order(3, [(1, 0), (1, 2), (2, 1)], [False, True, False])
    assert flow.loops == [] and flow.order == [2, 1, 0]


def test_a_delay_reading_itself_is_no_loop() -> None:
    flow = execution_order(1, [(0, 0)], [True])
    assert flow == execution_order(1, [], [True])
    assert flow.order == [0]


edge_lists = st.integers(1, 7).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=14),
    st.lists(st.booleans(), min_size=n, max_size=n),
))


@settings(max_examples=300, deadline=None)
@given(edge_lists)
def test_execution_order_properties(case: tuple[int, list[tuple[int, int]], list[bool]]) -> None:
    n, edges, delay = case
    strict = [(u, v) for u, v in edges if not delay[u]]
    flow = execution_order(n, edges, delay)
    # an order exists exactly when the edges out of non-delay nodes have no cycle
    assert (flow.loops != []) == is_cyclic(n, strict)
    if flow.loops:
        assert flow.order == []
        assert [c[0] for c in flow.loops] == sorted(c[0] for c in flow.loops)
        for loop in flow.loops:
            assert loop[0] == min(loop)
            for u, v in itertools.pairwise([*loop, loop[0]]):
                assert (u, v) in strict  # each named loop is a real cycle, in flow order
        return
    assert sorted(flow.order) == list(range(n))
    at = {v: k for k, v in enumerate(flow.order)}
    assert all(at[u] < at[v] for u, v in strict)  # every strict writer runs first
    # the delay edges are kept unless one would close a loop: every one the order does
    # not respect has its reader reaching the delay node through the edges it does
    kept = strict + [(u, v) for u, v in edges if delay[u] and u != v and at[u] < at[v]]
    for u, v in edges:
        if delay[u] and u != v and at[u] > at[v]:
            assert reaches(adjacency(n, kept), v, u)
    # no edges at all: file order
    assert execution_order(n, [], delay).order == list(range(n))
