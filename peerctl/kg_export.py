"""Write the knowledge graph (columns from the daemon's ``kg_graph``) as GraphML or JSON.

GraphML is a directed multigraph with typed ``<key>`` declarations, as networkx
(``read_graphml``), Gephi and yEd read it. JSON is networkx's node-link format
(``networkx.node_link_graph(data, edges="links")``, networkx >= 3.4).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"


def rows(columns: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Column-wise data as row dicts."""
    names = list(columns)
    for values in zip(*(columns[n] for n in names), strict=True):
        yield dict(zip(names, values, strict=True))


def _kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "long"
    if present and all(isinstance(v, int | float) for v in present):
        return "double"
    return "string"


def write_graphml(graph: dict[str, dict[str, list[Any]]], out: TextIO) -> None:
    """GraphML of ``{"nodes": columns, "edges": columns}``; ``id``/``src``/``dst`` become
    node ids and edge ends, every other column an attribute (None values omitted)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("graphml", xmlns=GRAPHML_NS)
    keys: dict[tuple[str, str], str] = {}
    for domain, columns, skip in (("node", graph["nodes"], {"id"}),
                                  ("edge", graph["edges"], {"src", "dst"})):  # fmt: skip
        for name, values in columns.items():
            if name in skip:
                continue
            key_id = f"{domain[0]}_{name}"
            keys[(domain, name)] = key_id
            ET.SubElement(root, "key", {"id": key_id, "for": domain, "attr.name": name,
                                        "attr.type": _kind(values)})  # fmt: skip
    g = ET.SubElement(root, "graph", id="kg", edgedefault="directed")
    for node in rows(graph["nodes"]):
        el = ET.SubElement(g, "node", id=str(node["id"]))
        _data(el, node, keys, "node", {"id"})
    for n, edge in enumerate(rows(graph["edges"])):
        el = ET.SubElement(g, "edge", id=f"e{n}", source=str(edge["src"]), target=str(edge["dst"]))
        _data(el, edge, keys, "edge", {"src", "dst"})
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(root, encoding="unicode"))
    out.write("\n")


def _data(el: Any, row: dict[str, Any], keys: dict[tuple[str, str], str], domain: str,
          skip: set[str]) -> None:  # fmt: skip
    import xml.etree.ElementTree as ET

    for name, value in row.items():
        if name in skip or value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        ET.SubElement(el, "data", key=keys[(domain, name)]).text = text


def node_link(graph: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """networkx node-link data (directed multigraph)."""
    nodes = [{k: v for k, v in n.items() if v is not None} for n in rows(graph["nodes"])]
    links = []
    for edge in rows(graph["edges"]):
        link = {k: v for k, v in edge.items() if v is not None and k not in ("src", "dst")}
        links.append({"source": edge["src"], "target": edge["dst"], **link})
    return {"directed": True, "multigraph": True, "graph": {"name": "duckpeer-kg"},
            "nodes": nodes, "links": links}  # fmt: skip
