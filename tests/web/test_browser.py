"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; nothing
downloads a browser) against a real `meterfox serve` with a fake upstream: the overview's month
is `meterfox report`'s, Live shows a request made while the page is open, revoking in the page
makes the proxy refuse the key, an Explore view survives a reload from its URL, a key created
in the page is shown once and works, and no page logs a console error. Each page's screenshot
goes to test-artifacts/screenshots/ (kept by CI)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import openai
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bench.seed_db import seed
from meterfox_cli.money import format_usd, from_nanousd, to_nanousd
from meterfox_cli.paths import resolve_paths
from meterfox_cli.web.keeper import OVERVIEW_FRESH_S
from tests.cli.conftest import ROOT, launch_serve, run_meterfox
from tests.fakes.admin_apis import DAY, Billed, FakeAdminAPIs
from tests.fakes.admin_apis import serve as serve_admin
from tests.fakes.records import Req, record_to
from tests.fakes.upstream import Reply
from tests.fixtures.openai_style import chat
from tests.web.test_keeper import kept_answers, read_worker, stopped

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PROVIDER_KEY = "sk-proj-TESTONLY-browser-4444"
SEEDED_ROWS = 20_000
# The dashboard's reads run in a SCHED_IDLE worker (it must never slow the proxy): on a machine
# busy with other work it waits for an idle core, so the page is given more than Playwright's
# default 5 s to show what these tests check (a wait, not a speed bar: bench/ measures speed).
expect.set_options(timeout=30_000)
# Bytes the page moved: the document and every resource (its files and API reads), as sent.
TRANSFERRED = """() => [...performance.getEntriesByType("navigation"),
    ...performance.getEntriesByType("resource")]
  .reduce((sum, entry) => sum + (entry.transferSize || entry.encodedBodySize), 0)"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.closed = False
        page.on(
            "console",
            lambda m: not self.closed and m.type == "error" and self.errors.append(m.text),
        )
        page.on("pageerror", lambda e: not self.closed and self.errors.append(str(e)))

    async def close(self) -> None:
        """Close the page while the daemon still runs (a page left open on Live would log its
        stream's reconnection failing once the daemon stops)."""
        self.closed = True
        await self.page.context.close()

    async def shot(self, name: str, **options) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), **options)
        return path


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator:
    watched: list[Watched] = []

    async def open_(url: str, **context) -> Watched:
        ctx = await browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
        page = Watched(await ctx.new_page())
        watched.append(page)
        await page.page.goto(url)
        return page

    yield open_
    for page in watched:
        assert page.errors == [], page.errors  # no console errors on any page


async def meterfox(*args: str, input: str = "") -> str:
    done = await run_meterfox(*args, input=input)
    assert done.returncode == 0, done.stderr
    return done.stdout


def seeded() -> None:
    paths = resolve_paths()
    paths.ensure()
    seed(paths.database, SEEDED_ROWS, 45, 7, time.time())


async def ask(served, secret: str, model: str = "gpt-4o-mini") -> None:
    client = openai.AsyncOpenAI(
        base_url=served.base("openai") + "/v1", api_key=secret, max_retries=0
    )
    try:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()


async def test_the_overviews_month_is_meterfox_reports_total(open_page):
    seeded()
    terminal = json.loads(await meterfox("report", "--format", "json"))
    month = sum(row["cost_nanousd"] or 0 for row in terminal)
    async with launch_serve() as served:
        started = time.perf_counter()
        page = await open_page(f"{served.url}/_meterfox/")
        await expect(page.page.locator("#providers table")).to_be_visible()
        loaded = time.perf_counter() - started
        await expect(page.page.locator("#spend-month")).to_have_text(format_usd(month))
        await expect(page.page.locator("#top-tags table").first).to_be_visible()
        transferred = await page.page.evaluate(TRANSFERRED)
        assert 0 < transferred < 200_000, transferred  # the page and its API reads
        await page.shot("overview", full_page=True)
        await page.shot("overview-fold")  # the first screen: docs/img/dashboard-overview.png
        await page.page.click("[data-by=model]")
        await expect(page.page).to_have_url(f"{served.url}/_meterfox/#/overview?by=model")
        await expect(page.page.locator("#legend")).to_contain_text("gpt-4o")
        dark = await open_page(
            f"{served.url}/_meterfox/",
            color_scheme="dark",
            viewport={"width": 390, "height": 844},
            is_mobile=True,
        )
        await expect(dark.page.locator("#spend-month")).to_have_text(format_usd(month))
        await dark.shot("overview-phone-dark", full_page=True)
    print(f"overview over {SEEDED_ROWS:,} requests: {loaded:.2f} s, {transferred:,} bytes")


API_READS = """() => performance.getEntriesByType("resource")
  .filter((entry) => entry.name.includes("/api/")).map((entry) => entry.name)"""
OVERVIEW_READS = """() => performance.getEntriesByType("resource")
  .filter((entry) => entry.name.includes("/api/overview?")).map((entry) => entry.startTime)"""
SCRIPT_LOADED = """() => performance.getEntriesByType("resource")
  .find((entry) => entry.name.endsWith("/static/app.js")).responseEnd"""


async def test_the_overview_is_asked_for_with_the_pages_files_not_after_its_script(browser):
    """Without a fresh kept answer (its read worker stopped past the 5 s bound, or not started
    yet), the first screen's read leaves with the page's own files (a preload the script then
    uses), not once the script has arrived and run: one request, started before that."""
    async with launch_serve() as served:
        worker = await read_worker(served)
        context = await browser.new_context()
        try:
            page = Watched(await context.new_page())
            with stopped(worker):
                await asyncio.sleep(OVERVIEW_FRESH_S + 0.5)
                await page.page.goto(f"{served.url}/_meterfox/", wait_until="commit")
            await expect(page.page.locator("#spend-month")).to_be_visible()
            starts = await page.page.evaluate(OVERVIEW_READS)
            assert len(starts) == 1, starts  # the script used the preload: not read twice
            assert starts[0] < await page.page.evaluate(SCRIPT_LOADED)
            assert page.errors == []
        finally:
            await context.close()


async def test_a_ready_overview_comes_with_the_page_and_needs_no_request(open_page):
    """With the keeper's answers fresh, the page carries them (a JSON data block, which the
    CSP need not allow) and draws the whole Overview without one API request; text in them
    that could end the block (a tag value `</script>…`) is only text."""
    paths = resolve_paths()
    paths.ensure()
    hostile = '</script><script src="static/app.js"></script><img src=x>'
    record_to(paths.database, Req(time.time(), cost_nano=2_500, tags=(("feature", hostile),)))
    async with launch_serve() as served, aiohttp.ClientSession() as session:
        await kept_answers(served, session, await read_worker(served))
        page = await open_page(f"{served.url}/_meterfox/")
        await expect(page.page.locator("#top-tags table")).to_be_visible()
        await expect(page.page.locator("#spend-month")).to_have_text(format_usd(2_500))
        await expect(page.page.locator("#providers")).to_contain_text("openai")
        await expect(page.page.locator("#top-tags td").first).to_have_text(hostile)
        assert await page.page.evaluate(API_READS) == []
        assert await page.page.locator("img, script").count() == 2  # the page's own: no more


async def test_a_request_made_while_live_is_open_appears_without_a_reload(
    open_page, upstream_server
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o", {"prompt_tokens": 42, "completion_tokens": 7}))
    async with launch_serve(upstreams={"openai": server}) as served:
        page = await open_page(f"{served.url}/_meterfox/#/live")
        await expect(page.page.locator("#live-state")).to_contain_text("connected")
        await ask(served, "sk-caller-own-key", model="gpt-4o")
        row = page.page.locator("#live-table tbody tr").first
        await expect(row).to_contain_text("gpt-4o")
        await expect(row).to_contain_text("42")
        await expect(page.page.locator("#live-count")).to_have_text("1")
        await page.shot("live")
        await page.close()


async def test_revoking_a_key_in_the_page_makes_the_proxy_refuse_it(
    open_page, upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=PROVIDER_KEY)
    secret = (await meterfox("keys", "create", "app", "--budget", "5/month")).strip()
    async with launch_serve(upstreams={"openai": server}) as served:
        await ask(served, secret)
        page = await open_page(f"{served.url}/_meterfox/#/keys")
        await expect(page.page.locator("[data-revoke=app]")).to_be_visible()
        await page.shot("keys")
        assert secret not in await page.page.content()
        page.page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.page.click("[data-revoke=app]")
        await expect(page.page.locator(".status-revoked")).to_have_text("revoked")
        revoked = time.monotonic()
        while True:
            try:
                await ask(served, secret)
            except openai.AuthenticationError as exc:
                assert "'app' was revoked" in exc.message
                break
            assert time.monotonic() - revoked < 1.0, "still accepted 1 s after the page revoked it"
    assert "revoked" in await meterfox("keys", "list")


async def test_a_key_created_in_the_page_is_shown_once_and_works(
    open_page, upstream_server, encrypted_file_store
):
    fake, server = upstream_server
    fake.reply = Reply(json_body=chat("gpt-4o-mini", {"prompt_tokens": 3, "completion_tokens": 1}))
    await meterfox("keys", "set", "openai", input=PROVIDER_KEY)
    async with launch_serve(upstreams={"openai": server}) as served:
        page = await open_page(f"{served.url}/_meterfox/#/keys")
        form = page.page.locator("#create-form")
        await form.locator("[name=name]").fill("from-the-page")
        await form.locator("[name=budget]").fill("3/day")
        await form.locator("button[type=submit]").click()
        await expect(page.page.locator("#new-value")).to_contain_text("mf-")
        secret = await page.page.locator("#new-value").text_content()
        assert secret and secret.startswith("mf-")
        await ask(served, secret)
        await page.page.click("#hide-secret")
        await page.page.reload()
        await expect(page.page.locator("[data-revoke=from-the-page]")).to_be_visible()
        assert secret not in await page.page.content()
    assert "$3.00/day" in await meterfox("keys", "list")


async def test_an_explore_view_survives_a_reload_from_its_url(open_page):
    seeded()
    terminal = json.loads(
        await meterfox(
            "report",
            "--format",
            "json",
            "--by",
            "day,provider",
            "--since",
            "all",
            "--provider",
            "anthropic",
        )
    )
    total = format_usd(sum(row["cost_nanousd"] or 0 for row in terminal))
    async with launch_serve() as served:
        page = await open_page(f"{served.url}/_meterfox/#/explore")
        form = page.page.locator("#explore-form")
        await form.locator("[name=by]").fill("day,provider")
        await form.locator("[name=since]").fill("all")
        await form.locator("[name=provider]").fill("anthropic")
        await form.locator("button[type=submit]").click()
        await expect(page.page.locator("#explore-total")).to_have_text(total)
        url = page.page.url
        assert "by=day%2Cprovider" in url and "since=all" in url and "provider=anthropic" in url
        await page.page.reload()
        await expect(page.page.locator("#explore-total")).to_have_text(total)
        await expect(form.locator("[name=by]")).to_have_value("day,provider")
        fresh = await open_page(url)  # a bookmark opened in a new window
        await expect(fresh.page.locator("#explore-total")).to_have_text(total)
        rows = fresh.page.locator("#explore-table tbody tr")
        await expect(rows).to_have_count(len(terminal))
        csv = await fresh.page.locator("#csv").get_attribute("href")
        assert csv and csv.startswith("api/report.csv?by=day%2Cprovider")
        await fresh.shot("explore")


async def test_the_reconcile_page_is_meterfox_reconcile(open_page, upstream_server):
    """Before any sync the page says to run `meterfox sync`; after a sync from the fake admin
    APIs, its rows and totals are `meterfox reconcile --format json`'s, status coloured."""
    fake, server = upstream_server
    admin = FakeAdminAPIs()
    with serve_admin(admin) as admin_url:
        paths = resolve_paths()
        paths.ensure()
        paths.config_file.write_text(f'[providers.openai]\nbase_url = "{admin_url}"\n')
        async with launch_serve(upstreams={"openai": server}) as served:
            page = await open_page(f"{served.url}/_meterfox/#/reconcile?since=3d")
            await expect(page.page.locator("#reconcile-none")).to_contain_text("meterfox sync")
            for model, (prompt, completion) in (
                ("gpt-4o-mini", (1200, 300)),
                ("gpt-4o", (2000, 500)),
            ):
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
                fake.reply = Reply(json_body=chat(model, usage))
                await ask(served, "sk-caller-own-key", model=model)
            records = await wait_for_records(served, 2)
            today = int(time.time()) // DAY * DAY
            mini, big = records["gpt-4o-mini"], records["gpt-4o"]
            admin.ledger += [
                # match: the dated snapshot of the model the proxy saw, same tokens and money
                Billed("openai", today, "gpt-4o-mini-2024-07-18", 1200, 300, 1, mini, Decimal(0)),
                # price_mismatch: the same tokens for twice the money
                Billed("openai", today, "gpt-4o", 2000, 500, 1, big, big),
                # bypassed: billed yesterday, nothing of it proxied
                Billed(
                    "openai", today - DAY, "gpt-4.1-nano", 10_000, 1_000, 4, Decimal("0.0016"), 0
                ),
            ]
            env = {"OPENAI_ADMIN_KEY": admin.admin_keys["openai"]}
            synced = await run_meterfox("sync", "openai", "--since", "3d", env=env)
            assert synced.returncode == 0, synced.stderr
            terminal = json.loads(await meterfox("reconcile", "--since", "3d", "--format", "json"))
            assert {r["status"] for r in terminal} == {"match", "price_mismatch", "bypassed"}
            async with aiohttp.ClientSession() as session:
                url = f"{served.url}/_meterfox/api/reconcile?since=3d"
                async with session.get(url) as response:
                    api = json.loads(await response.text(), parse_float=Decimal)
            exact = json.loads(
                await meterfox("reconcile", "--since", "3d", "--format", "json"),
                parse_float=Decimal,
            )
            assert api["rows"] == exact and api["synced"] == ["openai"]  # every field, exact

            await page.page.reload()
            rows = page.page.locator("#reconcile-table tbody tr")
            await expect(rows).to_have_count(len(terminal))
            shown = [await row.locator("td").all_text_contents() for row in await rows.all()]
            for cells, row in zip(shown, terminal, strict=True):
                assert cells[:3] == [row["day"], row["provider"], row["model"]]
                assert cells[3] == f"{row['proxied_requests']:,}"
                assert cells[6] == format_usd(usd_nanos(row["proxied_cost_usd"]))
                assert cells[7] == f"{row['billed_requests']:,}"
                assert cells[10] == format_usd(usd_nanos(row["billed_cost_usd"]))
                assert cells[12:] == [row["status"], row["note"]]
            bypassed = page.page.locator("#reconcile-table tbody .status-bypassed")
            colour = await bypassed.evaluate("e => getComputedStyle(e).color")
            match = page.page.locator("#reconcile-table tbody .status-match")
            assert colour != await match.evaluate("e => getComputedStyle(e).color")
            total = page.page.locator("#reconcile-total td")
            proxied = sum(usd_nanos(r["proxied_cost_usd"]) for r in terminal)
            billed = sum(usd_nanos(r["billed_cost_usd"]) for r in terminal)
            await expect(total.nth(6)).to_have_text(format_usd(proxied))
            await expect(total.nth(10)).to_have_text(format_usd(billed))
            await page.shot("reconcile")
            await page.close()


def usd_nanos(value) -> int:
    return to_nanousd(Decimal(str(value)))


async def wait_for_records(served, count: int) -> dict[str, Decimal]:
    """model → the cost the proxy recorded for it (USD), once `count` records are committed."""
    deadline = time.monotonic() + 5
    while True:
        conn = sqlite3.connect(resolve_paths().database)
        try:
            rows = conn.execute("SELECT model, cost_nanousd FROM requests").fetchall()
        finally:
            conn.close()
        if len(rows) >= count:
            return {model: from_nanousd(cost) for model, cost in rows}
        assert time.monotonic() < deadline, f"{len(rows)} of {count} records after 5 s"
        await asyncio.sleep(0.05)
