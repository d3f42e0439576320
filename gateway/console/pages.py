"""The console's files (package data in ``gateway/console/static``), read once at start.

A request names a file only by a key of this table: nothing it says is joined to a path.
"""

from __future__ import annotations

from importlib import resources

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGES = {"": "index.html", "call": "call.html", "history": "history.html", "login": "login.html"}
LOGIN_ERROR_MARK = "<!--error-->"


class StaticFiles:
    """Every file of the console's static folder, by name, with its content type."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        folder = resources.files("gateway.console").joinpath("static")
        for entry in folder.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in TYPES:
                self.files[entry.name] = (entry.read_bytes(), TYPES[suffix])

    def get(self, name: str) -> tuple[bytes, str] | None:
        return self.files.get(name)

    def login_page(self, error: str = "") -> bytes:
        """The login form, with a refusal's message (plain text, escaped) when there is one."""
        body = self.files["login.html"][0]
        if not error:
            return body
        safe = error.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        note = f'<p class="error" role="alert">{safe}</p>'.encode()
        return body.replace(LOGIN_ERROR_MARK.encode(), note)
