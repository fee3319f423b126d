"""API v1.1 "Sellers see what they sold": GET /api/orders/sales over real HTTP.

Orders are sharded by buyer, so a seller's sales span every shard: the buyers here are
several fresh accounts (their ids spread over the shards), and paging must neither skip nor
repeat a line, also while new orders arrive between pages.
"""

from conftest import (
    ADDRESS,
    all_pages,
    create_product,
    get,
    line,
    new_user,
    place_order,
    post,
    qs,
    wait_shipment,
)

SALE_FIELDS = {
    "order_id", "line_no", "placed_at", "product_id", "title", "quantity", "unit_price_cents",
    "currency", "order_status", "shipment_id", "tracking_number", "ship_to",
}


def buy(buyer, *items):
    _, _, r = place_order(buyer, [line(p, q) for p, q in items])
    return r.expect(201).json()


def test_a_seller_sees_every_line_of_their_products_across_shards_newest_first(
        seller, other_seller):
    mine = create_product(seller)
    also_mine = create_product(seller)
    theirs = create_product(other_seller)
    buyers = [new_user("buyer") for _ in range(4)]
    orders = []
    for i, b in enumerate(buyers):
        orders.append(buy(b, (mine, 1 + i % 2), (theirs, 1)))
    orders.append(buy(buyers[0], (also_mine, 2)))
    wait_shipment(buyers[0], orders[-1]["id"])

    sales = all_pages("/api/orders/sales", token=seller.token, limit=2)
    got = [(s["order_id"], s["product_id"]) for s in sales]
    want = [(o["id"], it["product_id"]) for o in orders for it in o["items"]
            if it["product_id"] in (mine["id"], also_mine["id"])]
    assert sorted(got) == sorted(want), f"{got} vs {want}"
    assert len(set(got)) == len(got), "a line is listed twice"
    placed = [s["placed_at"] for s in sales]
    assert placed == sorted(placed, reverse=True), "newest first"
    for s in sales:
        assert set(s) == SALE_FIELDS, s
        assert set(s["ship_to"]) == {"city", "postal_code", "country"}, s["ship_to"]
        assert s["ship_to"] == {k: ADDRESS[k] for k in ("city", "postal_code", "country")}
        assert ADDRESS["name"] not in str(s) and ADDRESS["line1"] not in str(s), s
        assert not any(b.id in str(s) for b in buyers), "no buyer id for sellers"
    # The other seller's lines are theirs alone.
    theirs_sales = all_pages("/api/orders/sales", token=other_seller.token, limit=5)
    assert {s["product_id"] for s in theirs_sales} == {theirs["id"]}


def test_paging_sales_while_orders_arrive_never_skips_or_repeats_a_line(seller):
    p = create_product(seller, stock=100)
    buyers = [new_user("buyer") for _ in range(3)]
    before = [buy(buyers[i % 3], (p, 1))["id"] for i in range(5)]
    seen, cursor = [], None
    for page_no in range(20):
        path = "/api/orders/sales" + qs(limit=2, cursor=cursor)
        page = get(path, token=seller.token).expect(200).json()
        seen += [s["order_id"] for s in page["items"]]
        # A new order between pages sorts before the cursor: this paging never meets it.
        buy(buyers[page_no % 3], (p, 1))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(before), f"paged {seen}, existed {before}"
    assert len(set(seen)) == len(seen), "a line repeated"


def test_sales_filter_by_order_status_and_refuse_what_they_must(seller, buyer, other_seller):
    p = create_product(seller)
    kept = buy(buyer, (p, 1))
    cancelled = buy(buyer, (p, 1))
    post(f"/api/orders/{cancelled['id']}/cancel", token=buyer.token).expect(200)
    only = all_pages("/api/orders/sales?status=cancelled", token=seller.token, limit=5)
    assert [s["order_id"] for s in only] == [cancelled["id"]], only
    confirmed = all_pages("/api/orders/sales?status=confirmed", token=seller.token, limit=5)
    assert [s["order_id"] for s in confirmed] == [kept["id"]], confirmed
    get("/api/orders/sales?status=lost", token=seller.token).expect_problem(400)
    get("/api/orders/sales").expect_problem(401)
    get("/api/orders/sales", token=buyer.token).expect_problem(403)
    # A seller reads only their own sales.
    get(f"/api/orders/sales{qs(seller_id=seller.id)}", token=other_seller.token) \
        .expect_problem(403)


def test_an_admin_reads_a_sellers_sales_with_seller_id(seller, buyer, admin):
    p = create_product(seller)
    order = buy(buyer, (p, 3))
    sales = all_pages(f"/api/orders/sales{qs(seller_id=seller.id)}", token=admin.token, limit=5)
    assert [(s["order_id"], s["quantity"]) for s in sales] == [(order["id"], 3)], sales
    get("/api/orders/sales", token=admin.token).expect_problem(400)
