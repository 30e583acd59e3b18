"""The gateway's status page: one HTML page, refreshed from ``/status.json`` by its own script."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Callable
from typing import Any

#: Seconds between two refreshes of the status page.
REFRESH_SECS = 2

PLUGIN_COLUMNS = ("name", "version", "state", "failure", "restarts")
CHANNEL_COLUMNS = ("plugin", "channel", "instance", "state", "last_error", "restarts", "since")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; min-width: 40rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
td.state { font-weight: bold; }
tr.empty td { color: #777; font-style: italic; }
#updated { color: #777; }
"""

# Static, so that the Content-Security-Policy can name it by its hash. Data reaches it only
# through /status.json and data- attributes, and reaches the page only as text.
_SCRIPT = """
(function () {
  "use strict";
  var url = document.body.getAttribute("data-status-url");
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 2000;
  var updated = document.getElementById("updated");
  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }
  var plugins = {
    name: function (p) { return p.name; },
    version: function (p) { return p.version; },
    state: function (p) { return p.state; },
    failure: function (p) {
      return p.failure ? p.failure.stage + ": " + p.failure.reason : "";
    },
    restarts: function (p) { return p.restarts; }
  };
  var channels = {};
  ["plugin", "channel", "instance", "state", "last_error", "restarts", "since"].forEach(
    function (key) { channels[key] = function (c) { return c[key]; }; }
  );
  function fill(table, rows, columns, keyAttribute, key, emptyText) {
    var body = document.createElement("tbody");
    var names = Object.keys(columns);
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      tr.setAttribute(keyAttribute, text(key(item)));
      names.forEach(function (column) {
        var td = document.createElement("td");
        td.className = column;
        td.textContent = text(columns[column](item));
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      tr.className = "empty";
      td.colSpan = names.length;
      td.textContent = emptyText;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    table.setAttribute("data-rendered", "live");
  }
  function channelKey(c) {
    return [c.plugin, c.channel, c.instance].map(text).join("/");
  }
  function refresh() {
    return fetch(url, { cache: "no-store", headers: { accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (status) {
        fill(document.getElementById("plugins"), status.plugins, plugins,
             "data-plugin", function (p) { return p.name; }, "No plugins.");
        fill(document.getElementById("channels"), status.channels, channels,
             "data-channel", channelKey, "No channels.");
        updated.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function (error) {
        updated.textContent = "Could not refresh: " + error.message;
      });
  }
  function loop() {
    refresh().then(function () { setTimeout(loop, every); });
  }
  loop();
})();
"""


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: The status page loads nothing from elsewhere and runs no script but its own.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_source_hash(_SCRIPT)}; "
    f"style-src {_source_hash(_STYLE)}; "
    "connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _cell(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def _rows(
    items: list[dict[str, Any]],
    columns: tuple[str, ...],
    key_attribute: str,
    key: Callable[[dict[str, Any]], str],
    *,
    empty: str,
    values: Callable[[dict[str, Any], str], Any],
) -> str:
    if not items:
        return f'<tr class="empty"><td colspan="{len(columns)}">{empty}</td></tr>'
    lines = []
    for item in items:
        cells = "".join(
            f'<td class="{column}">{_cell(values(item, column))}</td>' for column in columns
        )
        lines.append(f'<tr {key_attribute}="{html.escape(key(item))}">{cells}</tr>')
    return "\n".join(lines)


def _plugin_value(row: dict[str, Any], column: str) -> Any:
    if column == "failure":
        failure = row.get("failure")
        return f"{failure['stage']}: {failure['reason']}" if failure else None
    return row.get(column)


def _channel_key(row: dict[str, Any]) -> str:
    return "/".join(
        "" if row.get(part) is None else str(row.get(part))
        for part in ("plugin", "channel", "instance")
    )


def render_page(status: dict[str, Any], *, status_url: str = "/status.json") -> str:
    """The status page for ``status`` (what ``GatewayApp.status()`` returns).

    Rendered complete by the server, so it reads without JavaScript; its script then
    fetches ``status_url`` every ``REFRESH_SECS`` and re-renders both tables, setting their
    ``data-rendered`` attribute from ``"server"`` to ``"live"``.
    """
    plugin_rows = _rows(
        status["plugins"],
        PLUGIN_COLUMNS,
        "data-plugin",
        lambda row: str(row["name"]),
        empty="No plugins.",
        values=_plugin_value,
    )
    channel_rows = _rows(
        status["channels"],
        CHANNEL_COLUMNS,
        "data-channel",
        _channel_key,
        empty="No channels.",
        values=lambda row, column: row.get(column),
    )
    plugin_heads = "".join(
        f"<th>{label}</th>" for label in ("Plugin", "Version", "State", "Failure", "Restarts")
    )
    channel_heads = "".join(
        f"<th>{label}</th>"
        for label in ("Plugin", "Channel", "Instance", "State", "Last error", "Restarts", "Since")
    )
    version = html.escape(str(status["host"]["version"]))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clawhost status</title>
<style>{_STYLE}</style>
</head>
<body data-status-url="{html.escape(status_url)}" data-refresh-ms="{REFRESH_SECS * 1000}">
<h1>clawhost <span id="version">{version}</span></h1>
<p id="updated">Rendered by the server.</p>
<h2>Plugins</h2>
<table id="plugins" data-rendered="server">
<thead><tr>{plugin_heads}</tr></thead>
<tbody>
{plugin_rows}
</tbody>
</table>
<h2>Channels</h2>
<table id="channels" data-rendered="server">
<thead><tr>{channel_heads}</tr></thead>
<tbody>
{channel_rows}
</tbody>
</table>
<script>{_SCRIPT}</script>
</body>
</html>
"""
