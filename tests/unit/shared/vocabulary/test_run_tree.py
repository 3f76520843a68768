"""A session's tree of runs (shared/vocabulary/run_tree.py): the walk below a run and the runs a follower reads."""

import random

from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.run_tree import Subtree, descendants


def spawned(*edges: tuple[str, str | None]) -> list[RunRecord]:
    """The records of runs `(run_id, parent)`, in that order, as spawn.lua writes them: each child's
    `parent_run_id`, and its id among its parent's `children`, in the order spawned."""
    runs = {run_id: RunRecord(run_id=run_id, input="", parent_run_id=parent) for run_id, parent in edges}
    for run_id, parent in edges:
        if parent is not None:
            runs[parent].children.append(run_id)
    return list(runs.values())


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


# root ─ a ─ a1 ─ a11
#      │   └ a2
#      └ b ─ b1
TREE = spawned(("root", None), ("a", "root"), ("a1", "a"), ("b", "root"), ("a11", "a1"), ("a2", "a"), ("b1", "b"))


def test_descendants_are_level_by_level_or_branch_by_branch_siblings_in_the_order_spawned() -> None:
    shuffled = random.Random(7).sample(TREE, len(TREE))  # the records' order (a hash's) is not the tree's
    assert ids(descendants(shuffled, "root")) == ["a", "b", "a1", "a2", "b1", "a11"]
    assert ids(descendants(shuffled, "root", depth_first=True)) == ["a", "a1", "a11", "a2", "b", "b1"]
    assert ids(descendants(shuffled, "a")) == ["a1", "a2", "a11"]
    assert ids(descendants(shuffled, "a", depth_first=True)) == ["a1", "a11", "a2"]


def test_the_root_alone_or_unknown_has_no_descendants() -> None:
    assert descendants(spawned(("root", None)), "root") == []
    assert descendants(TREE, "a11") == []
    assert descendants(TREE, "nobody") == []
    assert descendants([], "nobody", depth_first=True) == []


def test_a_child_with_no_record_is_left_out_with_what_it_spawned() -> None:
    forked = [run for run in TREE if run.run_id != "a1"]  # a fork keeps only the runs ended by its point
    assert ids(descendants(forked, "root")) == ["a", "b", "a2", "b1"]
    assert ids(descendants(forked, "root", depth_first=True)) == ["a", "a2", "b", "b1"]
    assert Subtree.of(forked, "a").runs == {"a", "a2"}


def test_a_deep_tree_is_walked_to_its_bottom_without_recursion() -> None:
    chain = spawned(("r0", None), *((f"r{depth}", f"r{depth - 1}") for depth in range(1, 5000)))
    expected = [f"r{depth}" for depth in range(1, 5000)]
    assert ids(descendants(chain, "r0")) == expected
    assert ids(descendants(chain, "r0", depth_first=True)) == expected


def test_a_run_met_twice_is_walked_once() -> None:
    # No tree the scripts write has a cycle (a child's id is derived from its parent's): a broken one ends.
    looped = spawned(("a", None), ("b", "a"))
    looped[1].children += ["a", "b"]
    assert ids(descendants(looped, "a")) == ["b"]
    assert ids(descendants(looped, "a", depth_first=True)) == ["b"]
    assert Subtree.of(looped, "b").runs == {"a", "b"}


def test_the_records_children_name_the_runs_whose_parent_run_id_names_their_parent() -> None:
    """The two ways of reading the tree (a parent's `children`, a child's `parent_run_id`) agree on every
    tree spawn.lua writes: the walk by the first is the one the reading room took by the second."""
    rng = random.Random(85)
    for _ in range(200):
        edges: list[tuple[str, str | None]] = [("r0", None)]
        for index in range(1, rng.randint(1, 30)):
            edges.append((f"r{index}", rng.choice(edges)[0]))
        runs = rng.sample(spawned(*edges), len(edges))
        root = rng.choice(edges)[0]
        below, level = {root}, {root}
        while level:
            level = {run.run_id for run in runs if run.parent_run_id in level}
            below |= level
        assert Subtree.of(runs, root).runs == below
        assert sorted(ids(descendants(runs, root))) == sorted(below - {root})
        assert sorted(ids(descendants(runs, root, depth_first=True))) == sorted(below - {root})


def test_a_subtree_learns_each_run_a_followed_run_spawns() -> None:
    followed = Subtree("a")
    assert "a" in followed and "b" not in followed
    assert not followed.spawned("a", "root")  # its own spawn: followed, as the root, not as a child
    assert "a" in followed
    assert followed.spawned("a1", "a") and followed.spawned("a11", "a1")  # a grandchild after its parent
    assert not followed.spawned("b", "root") and "b" not in followed  # a sibling's is not
    assert not followed.spawned("b1", "b") and "b1" not in followed
    assert followed.runs == {"a", "a1", "a11"}


def test_a_subtree_of_the_records_starts_with_the_children_spawned_before() -> None:
    followed = Subtree.of(TREE, "a")
    assert followed.runs == {"a", "a1", "a2", "a11"}
    assert followed.spawned("a3", "a2")
    assert followed.runs == {"a", "a1", "a2", "a11", "a3"}
    assert Subtree.of(TREE, "nobody").runs == {"nobody"}
