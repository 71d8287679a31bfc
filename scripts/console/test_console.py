"""The console in a real headless browser (Debian's chromium driven by Playwright), against
real `registry` processes: sign in, create a namespace, publish a config and see it, edit it
and roll it back with the diff shown, see a registered service and disable an instance, and see
the cluster page of a 3-member cluster. Every change the pages make is checked through the
HTTP API. Screenshots go to $SCREENSHOTS (default target/console-screenshots)."""

import os
import sys

from playwright.sync_api import expect, sync_playwright

from registry import cluster, eventually, patience, standalone, ADMIN_PASSWORD

BINARY = sys.argv[1]
SHOTS = os.environ.get("SCREENSHOTS", "target/console-screenshots")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NS = "console-dev"
TIMEOUT_MS = 15_000 * patience()


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in(page, base):
    page.goto(f"{base}/nacos/")
    page.get_by_label("User name").fill("nacos")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    shot(page, "01-login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Configurations")).to_be_visible()


def namespaces(page, server, token):
    page.get_by_role("link", name="Namespaces").click()
    page.get_by_role("button", name="Create namespace").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Namespace id").fill(NS)
    dialog.get_by_label("Name", exact=True).fill("Development")
    dialog.get_by_label("Description").fill("made by the console test")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("td", has_text=NS)).to_be_visible()
    listed = server.call("GET", "/nacos/v1/console/namespaces", token=token)["data"]
    assert any(n["namespace"] == NS and n["namespaceShowName"] == "Development" for n in listed), listed
    shot(page, "02-namespaces")
    page.select_option("#ns", NS)


def configs(page, server, token):
    key = {"dataId": "orders.yaml", "group": "DEFAULT_GROUP", "tenant": NS}
    content = lambda: server.call("GET", "/nacos/v1/cs/configs", key, token)
    page.get_by_role("link", name="Configurations").click()
    page.get_by_role("link", name="Create configuration").click()
    page.get_by_label("Data id").fill(key["dataId"])
    page.get_by_label("Format").select_option("yaml")
    page.locator("textarea.code-input").fill("server:\n  port: 8080\n# first\n")
    assert page.locator("main").inner_text().strip().endswith("Publish"), "stray text after the form"
    shot(page, "03-config-new")
    page.get_by_role("button", name="Publish", exact=True).click()
    eventually("the published config", lambda: "8080" in content())
    # Seen in the list.
    page.get_by_role("link", name="‹ All configurations").click()
    expect(page.get_by_role("link", name="orders.yaml")).to_be_visible()
    shot(page, "04-config-list")
    # Edited.
    page.get_by_role("link", name="orders.yaml").click()
    editor = page.locator("textarea.code-input")
    expect(editor).to_have_value("server:\n  port: 8080\n# first\n")
    editor.fill("server:\n  port: 9090\n# second\n")
    page.get_by_role("button", name="Publish", exact=True).click()
    eventually("the edited config", lambda: "9090" in content())
    expect(page.locator(".tok-key", has_text="port")).to_be_visible()
    expect(page.locator("section.card", has_text="Beta release")).not_to_contain_text("null")
    shot(page, "05-config-edit")
    # Beta: the editor content to one client IP, seen through the API, then stopped.
    beta = lambda: server.call("GET", "/nacos/v1/cs/configs", {**key, "beta": "true"}, token)["data"]
    editor.fill("server:\n  port: 7070\n# beta\n")
    page.get_by_label("Beta IPs").fill("10.9.9.9")
    page.get_by_role("button", name="Publish as beta").click()
    eventually("the beta in the API", lambda: (beta() or {}).get("betaIps") == "10.9.9.9")
    assert "7070" in beta()["content"] and "9090" in content(), "the beta must not replace the release"
    expect(page.locator(".diff .line.add", has_text="port: 7070")).to_be_visible()
    shot(page, "05b-config-beta")
    page.get_by_role("button", name="Stop beta").click()
    eventually("the beta stopped", lambda: beta() is None)
    # History: the version holding 8080, diffed against the current content, then rolled back.
    page.get_by_role("link", name="History").click()
    history = server.call("GET", "/nacos/v1/cs/history", {"search": "accurate", **key}, token)["pageItems"]
    old = next(e for e in history if "8080" in e["content"])
    row = page.locator("tr", has=page.locator("code", has_text=old["id"]))
    row.get_by_role("button", name="Diff").click()
    expect(page.locator(".diff .line.del", has_text="port: 8080")).to_be_visible()
    expect(page.locator(".diff .line.add", has_text="port: 9090")).to_be_visible()
    shot(page, "06-config-history-diff")
    row.get_by_role("button", name="Roll back").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes").click()
    eventually("the rolled back config", lambda: "8080" in content() and "first" in content())
    expect(page.locator("textarea.code-input")).to_have_value("server:\n  port: 8080\n# first\n")


def services(page, server, token):
    instance = {"serviceName": "checkout", "groupName": "DEFAULT_GROUP", "namespaceId": NS,
                "ip": "127.0.0.1", "port": "8081", "ephemeral": "false", "weight": "1"}
    server.call("POST", "/nacos/v1/ns/instance", instance, token)
    page.get_by_role("link", name="Services").click()
    page.get_by_role("link", name="checkout").click()
    box = page.get_by_label("enabled 127.0.0.1:8081")
    expect(box).to_be_checked()
    box.uncheck()
    read = {k: instance[k] for k in ("serviceName", "groupName", "namespaceId")}
    listed = lambda: server.call("GET", "/nacos/v1/ns/catalog/instances", read, token)["list"]
    eventually("the instance disabled in the API", lambda: [i["enabled"] for i in listed()] == [False])
    # Clients no longer get it.
    assert server.call("GET", "/nacos/v1/ns/instance/list", read, token)["hosts"] == []
    shot(page, "07-service-instances")


def standalone_run(browser, binary):
    server = standalone(binary)
    try:
        token = server.login()
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, server.base)
        namespaces(page, server, token)
        configs(page, server, token)
        services(page, server, token)
        page.get_by_role("link", name="Users & roles").click()
        expect(page.locator("section.card", has_text="Users").get_by_role("cell", name="nacos", exact=True).first).to_be_visible()
        shot(page, "08-users")
        page.set_viewport_size({"width": 420, "height": 860})
        page.get_by_role("link", name="Configurations").click()
        expect(page.get_by_role("link", name="orders.yaml")).to_be_visible()
        shot(page, "09-narrow")
        page.close()
    finally:
        server.stop()


def cluster_run(browser, binary):
    members = cluster(binary, 3)
    try:
        first = members[0]
        # The admin account is created through Raft once a leader is elected.
        token = eventually("a login on the new cluster", first.login)
        eventually("one leader in the cluster view", lambda: sum(
            m["role"] == "leader" for m in first.call("GET", "/nacos/v1/console/cluster", token=token)["data"]["members"]) == 1)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, first.base)
        page.get_by_role("link", name="Cluster").click()
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(3)
        expect(page.locator("tbody .badge.role-leader")).to_have_count(1)
        expect(page.locator("tbody .badge.role-follower")).to_have_count(2)
        expect(page.locator(".stat", has_text="Distro")).to_contain_text("in agreement")
        shot(page, "10-cluster")
        page.close()
    finally:
        for m in members:
            m.stop()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            standalone_run(browser, BINARY)
            cluster_run(browser, BINARY)
        finally:
            browser.close()
    print(f"console: all checks passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
