"""A tiny company website served on 127.0.0.1 for crawl tests: pages, a sitemap, robots.txt, redirects, a PDF."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_pdf(title: str, pages: list[list[str]]) -> bytes:
    """A minimal valid PDF with a title and one Helvetica text line per entry on each page."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        text = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info_number = len(objects) + 1
    objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_number,
        xref,
    )
    return bytes(out)


def page(title: str, body: str, *, stages: str = "") -> bytes:
    """An HTML page wrapped in site chrome (navigation, footer, scripts) that cleaning must drop."""
    meta = f'<meta name="journey-stages" content="{stages}">' if stages else ""
    return f"""<!doctype html><html><head><title>{title} | Brightdesk</title>{meta}
<script>window.analytics = "TRACKING-SNIPPET";</script><style>.nav {{ color: red }}</style></head>
<body><header><nav><a href="/">Home</a> <a href="/pricing">Pricing</a> <a href="/old-help">Help</a>
<a href="/private/secret">Staff</a> <a href="https://elsewhere.example/">Partner</a> NAVIGATION-MENU</nav></header>
<main><h1>{title}</h1>{body}</main>
<aside>SIDEBAR-PROMO</aside><footer>FOOTER-COPYRIGHT <a href="/guide.pdf">Guide</a></footer></body></html>""".encode()


class Site:
    """Routes -> (status, content type, body, extra headers); edit `routes` to change the site between crawls."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes, dict[str, str]]] = {}
        self.requested: list[str] = []
        self.trickle: dict[str, float] = {}  # path -> seconds between bytes of its body (a slow or hostile server)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.reset()

    def reset(self) -> None:
        """The site as it starts."""
        html = "text/html; charset=utf-8"
        listed = ["/", "/pricing", "/old-help", "/private/secret", "/guide.pdf", "/broken", "/bad.pdf", "/gone"]
        home = (
            "<p>Brightdesk is a help desk for small teams.</p>"
            '<p><a href="/pricing">See pricing</a> or <a href="/old-help">get help</a>.</p>'
        )
        pricing = (
            '<h2 id="team-plan">Team plan</h2><p>The Team plan costs $19 per agent per month, billed yearly.</p>'
            "<h2>Enterprise plan</h2><p>Enterprise adds single sign-on and an uptime SLA; ask sales for a quote.</p>"
        )
        help_page = (
            '<h2 id="reset">Reset your password</h2><p>Click "Forgot password" on the sign-in page and follow '
            "the emailed link to reset your password.</p><h2>Contact support</h2><p>Email support and we reply "
            "within four hours on weekdays.</p>"
        )
        guide = make_pdf(
            "Brightdesk onboarding guide",
            [
                ["Welcome to Brightdesk.", "Invite your agents from Settings then Team."],
                ["Connect your support mailbox to start receiving tickets."],
            ],
        )
        self.routes = {
            "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n", {}),
            "/sitemap.xml": (200, "application/xml", self.sitemap(listed), {}),
            "/": (200, html, page("Brightdesk help centre", home), {}),
            "/pricing": (200, html, page("Pricing", pricing, stages="decision"), {}),
            "/old-help": (301, "text/plain", b"", {"Location": "/help"}),
            "/help": (200, html, page("Getting help", help_page), {}),
            "/private/secret": (200, html, page("Secret", "<p>STAFF-ONLY-SECRET</p>"), {}),
            "/guide.pdf": (200, "application/pdf", guide, {}),
            "/broken": (500, html, b"<h1>Internal error</h1>", {}),
            "/bad.pdf": (200, "application/pdf", b"%PDF-1.4 this is not really a pdf", {}),
            "/redirect-private": (302, "text/plain", b"", {"Location": "http://10.0.0.1/admin"}),
            "/redirect-metadata": (302, "text/plain", b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
        }

    def sitemap(self, paths: list[str]) -> bytes:
        """A sitemap.xml listing paths of this site."""
        urls = "".join(f"<url><loc>{self.url}{p}</loc></url>" for p in paths)
        return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()

    def _handler(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.requested.append(self.path)
                status, content_type, body, headers = site.routes.get(
                    self.path, (404, "text/html", b"<h1>Not found</h1>", {})
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.path not in site.trickle:
                    self.wfile.write(body)
                    return
                try:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(site.trickle[self.path])
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args) -> None:
                pass

        return Handler

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
