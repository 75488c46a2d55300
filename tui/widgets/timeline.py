"""The timeline pane: recent periods, then years, months and days, with photo counts."""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from core.timeline import Bucket, Timeline


def bucket_label(bucket: Bucket) -> Text:
    """``2019-05  37 photos  80%``: the key (or a recent period's name), count, indexed share."""
    name = bucket.label if bucket.kind == "relative" else bucket.key
    text = Text(name, style="bold" if bucket.kind in ("relative", "year") else "")
    noun = "photo" if bucket.count == 1 else "photos"
    text.append(f"  {bucket.count} {noun}", style="")
    if bucket.count:
        share = bucket.indexed / bucket.count
        style = "green" if bucket.indexed == bucket.count else "yellow" if bucket.indexed else "dim"
        text.append(f"  {int(share * 100)}%", style=style)
    return text


def _walk(buckets: list[Bucket], parent: str | None) -> Iterator[tuple[Bucket, str | None]]:
    for bucket in buckets:
        yield bucket, parent
        yield from _walk(bucket.children, bucket.key)


class TimelineTree(Tree[str]):
    """Tree of timeline buckets; each node's data is its bucket key (``"2019-05"``, ``"all"``).

    :meth:`show` updates the tree in place, so the cursor and the open branches stay where the
    user left them while indexing refreshes the counts.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Timeline", id=id)
        self.show_root = False
        self.guide_depth = 2
        self.auto_expand = False
        self._bucket_nodes: dict[str, TreeNode[str]] = {}
        self._buckets: dict[str, Bucket] = {}

    @property
    def selected_bucket(self) -> Bucket | None:
        """The bucket under the cursor."""
        node = self.cursor_node
        if node is None or node.data is None:
            return None
        return self._buckets.get(node.data)

    def bucket(self, key: str) -> Bucket | None:
        """The bucket shown with this key."""
        return self._buckets.get(key)

    def node(self, key: str) -> TreeNode[str] | None:
        """The tree node that shows the bucket with this key; None when it is not shown."""
        return self._bucket_nodes.get(key)

    def show(self, timeline: Timeline) -> None:
        """Show ``timeline``: relabel known buckets, add new ones in date order, drop gone ones."""
        first = not self._bucket_nodes
        seen: set[str] = set()
        for bucket, parent_key in _walk([*timeline.relative, *timeline.years], None):
            seen.add(bucket.key)
            known = self._buckets.get(bucket.key)
            self._buckets[bucket.key] = bucket
            node = self._bucket_nodes.get(bucket.key)
            if node is not None:
                if known is None or (known.count, known.indexed) != (bucket.count, bucket.indexed):
                    node.set_label(bucket_label(bucket))
                continue
            label = bucket_label(bucket)
            parent = self.root if parent_key is None else self._bucket_nodes[parent_key]
            leaf = not bucket.children
            before = self._insertion_point(parent, bucket)
            if leaf:
                node = parent.add_leaf(label, bucket.key, before=before)
            else:
                node = parent.add(label, bucket.key, before=before)
            self._bucket_nodes[bucket.key] = node
        for key in sorted((key for key in self._bucket_nodes if key not in seen), key=len):
            node = self._bucket_nodes.pop(key, None)
            if node is None:
                continue
            for gone in [other for other in self._bucket_nodes if other.startswith(key)]:
                del self._bucket_nodes[gone]
            node.remove()
        self._buckets = {key: self._buckets[key] for key in self._bucket_nodes}
        if first and self.root.children:
            # A node just added has no line number until the tree draws again.
            self.call_after_refresh(self.move_cursor, self.root.children[0])

    def _insertion_point(self, parent: TreeNode[str], bucket: Bucket) -> TreeNode[str] | None:
        """The sibling to insert before so that dated buckets stay newest first."""
        if bucket.kind == "relative":
            return None
        for sibling in parent.children:
            key = sibling.data
            if key is None or self._buckets.get(key, bucket).kind == "relative":
                continue
            if key < bucket.key:
                return sibling
        return None
