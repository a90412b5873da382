"""Pure logic of the label tree: which trie nodes are evaluated, in which batch, tagged how."""
import pytest

from backend.engines.llamacpp import tree_batches
from backend.errors import EngineError

LABELS = [(1, 2, 3), (1, 2, 4), (1, 5), (6,), (7, 8, 9, 10), (7, 8, 11), (12, 13)]
INNER = {(1,), (1, 2), (7,), (7, 8), (7, 8, 9), (12,)}


def _check(batches, max_sequences, max_nodes):
    seen = set()
    for batch in batches:
        paths = [node.path for node in batch]
        assert len(paths) == len(set(paths)) <= max_nodes
        assert paths == sorted(paths, key=lambda p: (len(p), p))  # parents before children
        leaves = {}
        for node in batch:
            for seq in node.sequences:
                leaves.setdefault(seq, []).append(node.path)
        assert 1 <= len(leaves) <= max_sequences and set(leaves) == set(range(1, len(leaves) + 1))
        for seq, nodes in leaves.items():
            deepest = max(nodes, key=len)
            assert sorted(nodes, key=len) == [deepest[:k] for k in range(1, len(deepest) + 1)]  # one chain
        seen |= set(paths)
    assert seen == INNER


def test_one_batch_holds_every_inner_node_with_the_leaves_under_it():
    (batch,) = list(tree_batches(LABELS, max_sequences=255, max_nodes=512))
    by_path = {node.path: node.sequences for node in batch}
    assert set(by_path) == INNER
    assert by_path[(1,)] == by_path[(1, 2)]  # (1, 2) is the only leaf under (1,)
    assert len(by_path[(7,)]) == 1 and by_path[(7, 8)] == by_path[(7,)] == by_path[(7, 8, 9)]
    assert len({s for seqs in by_path.values() for s in seqs}) == 3  # leaves (1, 2), (7, 8, 9), (12,)
    _check([batch], 255, 512)


@pytest.mark.parametrize("max_sequences,max_nodes", [(1, 512), (2, 512), (255, 3), (2, 4)])
def test_small_limits_split_the_tree_and_repeat_shared_ancestors(max_sequences, max_nodes):
    batches = list(tree_batches(LABELS, max_sequences=max_sequences, max_nodes=max_nodes))
    assert len(batches) > 1
    _check(batches, max_sequences, max_nodes)


def test_single_token_labels_need_no_tree():
    assert list(tree_batches([(1,), (2,), (3,)], max_sequences=255, max_nodes=512)) == []


def test_a_label_longer_than_the_room_left_is_refused():
    with pytest.raises(EngineError):
        list(tree_batches(LABELS, max_sequences=255, max_nodes=2))
