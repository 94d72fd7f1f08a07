"""The console's pages: server-rendered HTML (templates/) that console.js brings to life from
the API and its event stream. Login puts the user's token in an HttpOnly, SameSite=Strict
cookie; logout is a CSRF-checked POST."""

from __future__ import annotations

import hmac
import html
from functools import cache
from importlib import resources
from string import Template

from aiohttp import web

from cloudai.core.models import validate_task_id
from cloudai.errors import PermissionDenied, Unauthenticated
from cloudai.master.auth import Auth
from cloudai.security.tokens import looks_like_user_token
from cloudai.web.session import COOKIE, caller_of, csrf_of, session_token

__all__ = ["add_page_routes"]

_VIEWS = {"workers": "Workers", "tasks": "Tasks", "task": "Task"}


@cache
def _template(name: str) -> Template:
    return Template((resources.files("cloudai.web") / "templates" / name).read_text("utf-8"))


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        content_type="text/html",
        charset="utf-8",
        text=_template("layout.html").substitute(title=html.escape(title), body=body),
    )


class _Pages:
    def __init__(self, auth: Auth, https: bool) -> None:
        self.auth = auth
        self.https = https

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login(request.query.get("m", ""))

    def _login(self, message: str, status: int = 200) -> web.Response:
        body = _template("login.html").substitute(
            message=html.escape(message),
            hidden="" if message else "hidden",
            insecure="" if self.auth.secure else _INSECURE,
        )
        return _page("Log in", body, status)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if self.auth.secure and not looks_like_user_token(token):
            return self._login("That is not a cloudai user token.", 401)
        try:
            await self.auth.bearer(f"Bearer {token}", insecure_name=token)
        except Unauthenticated as exc:
            return self._login(f"Not logged in: {exc.message}.", 401)
        resp = web.HTTPSeeOther("/tasks")
        resp.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", secure=self.https, path="/"
        )
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = session_token(request)
        sent = str(form.get("csrf", ""))
        if token and not hmac.compare_digest(sent.encode(), csrf_of(token).encode()):
            raise PermissionDenied("logout needs the page's CSRF token: reload and try again")
        resp = web.HTTPSeeOther("/login?m=Logged+out.")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/tasks")

    async def workers(self, request: web.Request) -> web.Response:
        return await self._view(request, "workers")

    async def tasks(self, request: web.Request) -> web.Response:
        return await self._view(request, "tasks")

    async def task(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        if validate_task_id(task_id) is not None:
            raise web.HTTPNotFound(text="no such task")
        return await self._view(request, "task", task_id)

    async def _view(self, request: web.Request, view: str, task_id: str = "") -> web.Response:
        caller = await caller_of(request, self.auth)  # 401: to the login form
        body = _template("app.html").substitute(
            view=view,
            user=html.escape(caller.name),
            admin="true" if caller.admin else "false",
            csrf=csrf_of(session_token(request)),
            task_id=html.escape(task_id),
            nav=_nav(view),
            role="admin" if caller.admin else "user",
            main=_template(f"{view}.html").substitute(task_id=html.escape(task_id)),
        )
        title = f"Task {task_id}" if task_id else _VIEWS[view]
        return _page(f"{title} · cloudai", body)


_INSECURE = (
    '<p class="warn" role="alert">This master runs <strong>--insecure</strong>: no '
    "authentication. Any name logs you in as an admin.</p>"
)


def _nav(view: str) -> str:
    links = []
    for key, href in (("workers", "/workers"), ("tasks", "/tasks")):
        current = (
            ' aria-current="page"' if view == key or (view == "task" and key == "tasks") else ""
        )
        links.append(f'<a href="{href}"{current}>{_VIEWS[key]}</a>')
    return " ".join(links)


def add_page_routes(app: web.Application, auth: Auth, https: bool) -> None:
    pages = _Pages(auth, https)
    app.router.add_get("/", pages.root)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_get("/workers", pages.workers)
    app.router.add_get("/tasks", pages.tasks)
    app.router.add_get("/tasks/{task_id}", pages.task)
    app.router.add_static("/static/", str(resources.files("cloudai.web") / "static"))
