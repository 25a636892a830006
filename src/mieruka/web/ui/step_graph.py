"""A pipeline's steps laid out as a small graph for the job page: one column per depth (a step
sits right of everything it depends on), drawn as SVG by templates/_steps.html."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.steps import StepRecord

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 34, 50, 14, 6  # 21 characters of 12px bold fit in NODE_W


@dataclass(frozen=True)
class Node:
    name: str
    label: str
    status: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    dashed: bool  # a rule execution hangs off its workflow step


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(steps: list[StepRecord]) -> Graph:
    by_name = {s.name: s for s in steps}
    depth: dict[str, int] = {}

    def parents(step: StepRecord) -> list[str]:
        deps = [d for d in step.depends_on if d in by_name]
        if not deps and step.parent in by_name:
            return [step.parent] if step.parent is not None else []
        return deps

    def depth_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        if name in seen:  # never in a valid plan; guard all the same
            return 0
        ups = parents(by_name[name])
        value = 1 + max((depth_of(u, seen | {name}) for u in ups), default=-1)
        depth[name] = value
        return value

    columns: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        column = depth_of(step.name)
        row = columns.get(column, 0)
        columns[column] = row + 1
        label = step.name if len(step.name) <= 21 else step.name[:20] + "…"
        nodes[step.name] = Node(
            step.name, label, step.status.value, PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y)
        )
    edges = []
    for step in steps:
        target = nodes[step.name]
        for up in parents(step):
            source = nodes[up]
            edges.append(
                Edge(
                    source.x + NODE_W,
                    source.y + NODE_H // 2,
                    target.x,
                    target.y + NODE_H // 2,
                    dashed=up == step.parent and up not in step.depends_on,
                )
            )
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(columns.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return Graph(list(nodes.values()), edges, width, height)
