"""acme/product-recs-block, through the gears_sdk.testing fixtures."""

import re

ITEMS = [
    {"id": "sku-1", "title": "Trail shoe", "price": 89, "url": "https://shop.example.com/p/sku-1",
     "image_url": "https://cdn.example.com/sku-1.jpg",
     "attributes": {"image_alt": "Trail shoe, side view"}},
    {"id": "sku-2", "title": "Rain jacket", "price": 1200.5, "url": "https://shop.example.com/p/sku-2",
     "image_url": "https://cdn.example.com/sku-2.jpg"},
]


def test_renders_accessible_cards(gear):
    result = gear.render(content={"items": ITEMS})
    html = result.html
    assert html.startswith('<section class="gear-recs gear-recs--grid" aria-label="Recommended for you">')
    assert '<h2 class="gear-recs__heading">Recommended for you</h2>' in html
    assert html.count('<li class="gear-recs__item"') == 2
    assert ('<a class="gear-recs__link" href="https://shop.example.com/p/sku-1">'
            '<img class="gear-recs__image" src="https://cdn.example.com/sku-1.jpg" '
            'alt="Trail shoe, side view" loading="lazy">'
            '<span class="gear-recs__title">Trail shoe</span></a>') in html
    assert 'alt="Rain jacket"' in html  # the title stands in for missing alt text
    assert '<span class="gear-recs__price">$89.00</span>' in html
    assert '<span class="gear-recs__price">$1,200.50</span>' in html
    assert result.data == {"heading": "Recommended for you", "item_ids": ["sku-1", "sku-2"]}


def test_every_image_has_alt_text(gear):
    html = gear.render(content={"items": ITEMS}).html
    images = re.findall(r"<img [^>]*>", html)
    assert images and all(re.search(r'alt="[^"]+"', img) for img in images)


def test_xss_in_item_fields_is_escaped(gear):
    evil = {"id": '"><script>alert(1)</script>', "title": "<img src=x onerror=alert(1)>",
            "price": "<b>free</b>", "url": "javascript:alert(1)",
            "image_url": "https://cdn.example.com/a.jpg", "attributes": {"image_alt": '" onload="alert(1)'}}
    result = gear.render(content={"items": [evil], "heading": "<i>Hi</i>"})
    html = result.html
    assert "<script" not in html and "<img src=x" not in html and "<b>" not in html
    assert "<i>" not in html and "javascript:" not in html
    assert 'alt="&quot; onload=&quot;alert(1)"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<a class="gear-recs__link"' not in html  # the unsafe link is dropped


def test_non_http_images_are_dropped(gear):
    item = {"id": "a", "title": "A", "image_url": "data:image/svg+xml,<svg onload=alert(1)>"}
    html = gear.render(content={"items": [item]}).html
    assert "<img" not in html and "svg" not in html


def test_empty_list_lets_the_engine_fall_back(gear):
    assert gear.render(content={"items": []}) is None
    assert gear.render(content={}) is None
    assert gear.render(content={"items": [{"id": "", "title": "No id"}, {"id": "x"}, "junk"]}) is None


def test_max_items_heading_currency_and_layout(gear):
    items = [{"id": f"i{n}", "title": f"Item {n}", "price": n} for n in range(10)]
    result = gear.render(content={"items": items, "heading": "Also viewed"},
                         config={"max_items": 3, "currency_symbol": "EUR ", "layout": "carousel"})
    assert result.data["item_ids"] == ["i0", "i1", "i2"]
    assert "gear-recs--carousel" in result.html and 'aria-label="Also viewed"' in result.html
    assert "EUR 2.00" in result.html


def test_reads_nothing_from_the_profile(gear, make_profile):
    assert gear.manifest.permissions.profile.read == ()
    result = gear.render(make_profile(attributes={"email": "ada@example.com"}),
                         content={"items": ITEMS[:1]})
    assert "ada@" not in result.html


def test_requires_the_recommendations_extension(gear):
    assert "acme/co-view-recs" in gear.manifest.requires

