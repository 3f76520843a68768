"""The API docs the gateway serves, in a browser with no way out to the internet."""

from playwright.async_api import Browser, Route

from tests.fixtures.stack import Gateway


async def test_swagger_ui_and_redoc_render_with_no_request_leaving_the_gateway(
    browser: Browser, gateway: Gateway
) -> None:
    page = await browser.new_page()
    outside: list[str] = []

    async def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(gateway.url):
            await route.continue_()
        else:  # only ReDoc's "powered by" logo (an image) comes from its CDN: the page works without it
            if route.request.resource_type != "image":
                outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_gateway)
    await page.goto(f"{gateway.url}/docs")
    await page.wait_for_selector('.opblock-summary-path:has-text("/v1/sessions/{session_id}/events")', timeout=15_000)
    await page.goto(f"{gateway.url}/redoc")
    await page.wait_for_selector('text="/v1/sessions/{session_id}/events"', timeout=15_000)
    assert outside == []
    await page.close()
