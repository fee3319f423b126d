// The storefront's journeys in a real headless Chromium against the app on real Spin.
// Run with tests/e2e/run.sh (it starts the app and sets E2E_BASE_URL); screenshots go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.E2E_BASE_URL;
if (!BASE) throw new Error('E2E_BASE_URL is not set: run tests/e2e/run.sh');
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const RUN = Date.now().toString(36);
const PASSWORD = 'correct horse battery staple';
const XSS_TITLE = '<script>alert(1)</script>';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];

let profileDir;
let context;
const seeded = {};

/** A JSON call to the public API, as the seller who stocks the shop. */
async function api(method, path, body, token) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
/** Every page checked by axe-core, with what it found (impact serious or critical only). */
const audited = new Map();

/** axe-core on the page as it is (injected over CDP: the CSP forbids any script of ours). */
async function audit(page, name) {
  const seen = await page.evaluate(() => typeof window.axe);
  if (seen === 'undefined') await page.evaluate(AXE_SOURCE);
  const { violations, passes } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  assert.ok(passes.length > 10, `axe ran on ${name}`);
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  const path = new URL(page.url()).pathname;
  const minor = violations.map((v) => `${v.impact} ${v.id}`);
  audited.set(`${name} ${path}`, `${passes.length} rules passed${minor.length ? `; ${minor.join(', ')}` : ''}`);
  assert.deepEqual(bad, [], `axe on ${name} (${path})`);
}

/** A screenshot of the page (artifacts/) and its accessibility check. */
async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  await audit(page, name);
}

// ---- the storefront's session records (SQLite file of the `web-sessions` label)

function sessionsDb() {
  const candidates = [process.env.E2E_SESSIONS_DB, process.env.SCALED_RUN_DIR && join(process.env.SCALED_RUN_DIR, 'kv-web-sessions.db')];
  const found = candidates.find((f) => f && existsSync(f));
  if (!found) throw new Error(`the web-sessions SQLite file is not among ${candidates}`);
  return found;
}
const sql = (statement) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', sessionsDb(), statement], { encoding: 'utf8' }).trim();
/** The record's key: the hex SHA-256 of the cookie's session id. */
const recordKey = (sid) => createHash('sha256').update(sid).digest('hex');
function readSession(sid) {
  const raw = sql(`SELECT CAST(value AS TEXT) FROM spin_key_value WHERE key = '${recordKey(sid)}'`);
  return raw ? JSON.parse(raw) : null;
}
function writeSession(sid, record) {
  const hex = Buffer.from(JSON.stringify(record)).toString('hex');
  sql(`UPDATE spin_key_value SET value = X'${hex}' WHERE key = '${recordKey(sid)}'`);
}
function deleteSession(sid) {
  sql(`DELETE FROM spin_key_value WHERE key = '${recordKey(sid)}'`);
}
/** Makes the session's access token look expired to the storefront (it then refreshes). */
function expireAccessToken(sid) {
  const r = readSession(sid);
  r.signed_in.access_expires_at = 0;
  writeSession(sid, r);
}
const sessionCookie = async () => (await context.cookies()).find((c) => c.name === 'mp_session')?.value;

/** Registers through the storefront's form (which signs in). */
async function registerInBrowser(page, who, name, seller = false) {
  await page.goto('/register');
  await page.getByLabel('Email').fill(who);
  await page.getByLabel('Password (10 to 128 characters)').fill(PASSWORD);
  await page.getByLabel('Your name').fill(name);
  if (seller) await page.getByLabel('sell').check();
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(`${BASE}/`);
}

/** Fills the checkout form and places the order; the order page's path. */
async function checkOut(page, name, line1, city, postal) {
  await page.locator('#checkout').click();
  await page.waitForURL(`${BASE}/checkout`);
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Address', { exact: true }).fill(line1);
  await page.getByLabel('City').fill(city);
  await page.getByLabel('Postal code').fill(postal);
  await page.getByLabel('Country (two letters, e.g. DE)').fill('DE');
  await page.locator('#place-order').click();
  await page.waitForURL(/\/orders\/[A-Za-z0-9_-]+$/);
  return new URL(page.url()).pathname;
}

/** A fresh page in a fresh browser context (no cookies), failing on any dialog (alert()). */
async function freshPage(t) {
  const p = await context.newPage();
  p.on('dialog', (d) => { t.diagnostic(`dialog: ${d.message()}`); throw new Error(`a dialog opened: ${d.message()}`); });
  return p;
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const email = `seller-${RUN}@example.test`;
  await api('POST', '/api/auth/register', { email, password: PASSWORD, display_name: 'Lamp Seller', role: 'seller' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
  seeded.lamp = await api('POST', '/api/products', {
    title: 'Brass desk lamp', description: 'A warm brass lamp for late readers.', category: 'lighting',
    price_cents: 4999, currency: 'EUR', stock: 10, attributes: { material: 'brass', watts: 40 },
  }, token);
  await api('POST', '/api/products', {
    title: 'Linen lampshade', description: 'Off-white linen, fits most lamps.', category: 'lighting',
    price_cents: 1850, currency: 'EUR', stock: 4,
  }, token);
  await api('POST', '/api/products', {
    title: 'Oak bookend pair', description: 'Solid oak, oiled.', category: 'books',
    price_cents: 2900, currency: 'EUR', stock: 7,
  }, token);
  seeded.xss = await api('POST', '/api/products', {
    title: XSS_TITLE, description: '"><img src=x onerror=alert(2)>', category: 'lighting',
    price_cents: 100, currency: 'EUR', stock: 5,
  }, token);
  profileDir = mkdtempSync(join(tmpdir(), 'e2e-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: '/usr/bin/chromium', args: ARGS, headless: true, baseURL: BASE,
    viewport: { width: 1100, height: 800 },
  });
});

after(async () => {
  const pages = [...audited.keys()];
  console.log(`# axe-core checked ${pages.length} pages, none with a serious or critical violation: ${
    [...audited].map(([page, found]) => `${page} (${found})`).join('; ')}`);
  await context?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

test('a buyer registers, finds a lamp despite a typo, orders it once and sees it ship', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);

  // Home: categories and the search box.
  const home = await page.goto('/');
  assert.equal(home.status(), 200);
  const csp = home.headers()['content-security-policy'];
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'none'/);
  assert.equal(home.headers()['x-content-type-options'], 'nosniff');
  await page.getByRole('link', { name: 'lighting' }).waitFor();
  await shot(page, '01-home');

  // Register (signs in).
  await page.getByRole('link', { name: 'Register' }).click();
  await page.getByLabel('Email').fill(`buyer-${RUN}@example.test`);
  await page.getByLabel('Password (10 to 128 characters)').fill(PASSWORD);
  await page.getByLabel('Your name').fill('Ada Buyer');
  await shot(page, '02-register');
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.locator('#logout').waitFor();
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'mp_session');
  assert.ok(cookie, 'a session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Lax');
  assert.equal(cookie.path, '/');
  assert.ok(cookie.value.length >= 43, 'at least 256 bits, base64url');

  // Search with a typo: "bras" for "brass" (the tolerance is the product service's).
  await page.locator('.big-search input[name=q]').fill('bras desk lamp');
  await page.locator('.big-search button').click();
  await page.waitForURL(/\/search\?q=bras\+desk\+lamp/);
  const hit = page.locator(`#results a[href="/products/${seeded.lamp.id}"]`);
  await hit.waitFor();
  await shot(page, '03-search');

  // Product page, add two to the cart.
  await hit.click();
  await page.waitForURL(`${BASE}/products/${seeded.lamp.id}`);
  assert.equal(await page.locator('#product-title').textContent(), 'Brass desk lamp');
  await shot(page, '04-product');
  await page.getByLabel('Quantity').fill('2');
  await page.locator('#add-to-cart').click();
  await page.waitForURL(`${BASE}/cart`);
  await page.locator('#cart-lines', { hasText: 'Brass desk lamp' }).waitFor();
  assert.match(await page.locator('.total').textContent(), /99\.98 EUR/);
  await page.reload();
  assert.match(await page.locator('#nav-cart').textContent(), /2/, 'the cart survives a reload');
  await shot(page, '05-cart');

  // Checkout with a shipping address.
  await page.locator('#checkout').click();
  await page.waitForURL(`${BASE}/checkout`);
  await page.getByLabel('Name').fill('Ada Buyer');
  await page.getByLabel('Address', { exact: true }).fill('1 Reading Lane');
  await page.getByLabel('City').fill('Berlin');
  await page.getByLabel('Postal code').fill('10115');
  await page.getByLabel('Country (two letters, e.g. DE)').fill('DE');
  await shot(page, '06-checkout');
  const form = await page.locator('#checkout-form').evaluate((f) => Object.fromEntries(new FormData(f)));
  assert.ok(form.idempotency_key, 'the form carries its idempotency key');
  assert.ok(form.csrf, 'the form carries its CSRF token');

  // Double submit: the same form posted twice at once (the browser's cookies) → one order.
  const [a, b] = await Promise.all([0, 1].map(() =>
    page.request.post('/checkout', { form, maxRedirects: 0 })));
  assert.equal(a.status(), 303);
  assert.equal(b.status(), 303);
  const orderPath = a.headers().location;
  assert.match(orderPath, /^\/orders\/[A-Za-z0-9_-]+$/);
  seeded.orderId = orderPath.split('/').pop();
  assert.equal(b.headers().location, orderPath, 'both submits lead to the same order');
  // …and a third time from the page itself (back, submit again): still that order.
  await page.locator('#place-order').click();
  await page.waitForURL(`${BASE}${orderPath}`);

  // The order page: confirmed, its shipment pending.
  let pending = false;
  for (let i = 0; i < 20 && !pending; i++) {
    pending = (await page.locator('.shipment-status').allTextContents()).includes('pending');
    if (!pending) { await page.waitForTimeout(500); await page.reload(); }
  }
  assert.ok(pending, 'the order page shows the pending shipment');
  assert.equal(await page.locator('#order-status').textContent(), 'confirmed');
  await page.locator('#cancel-order').waitFor();
  await shot(page, '07-order');

  // My orders: exactly one.
  await page.getByRole('link', { name: 'My orders', exact: true }).click();
  await page.waitForURL(`${BASE}/orders`);
  assert.equal(await page.locator('#orders tbody tr').count(), 1, 'one order, whatever the submits');
  assert.match(await page.locator('#nav-cart').textContent(), /^Cart$/, 'the ordered lines left the cart');
  await shot(page, '08-orders');

  // Public tracking, by the shipment's number.
  await page.goto(orderPath);
  await page.locator('.shipment a.mono').click();
  await page.locator('#tracking-status', { hasText: 'pending' }).waitFor();
  await shot(page, '09-track');

  // Log out: the session is gone, the browser is a stranger again.
  await page.locator('#logout').click();
  await page.waitForURL(`${BASE}/`);
  await page.getByRole('link', { name: 'Log in' }).waitFor();
  const after = await page.goto('/orders');
  assert.match(after.url(), /\/login\?next=%2Forders$/);
  await shot(page, '10-logged-out');
  await page.close();
});

test('a seller puts a product up, changes its stock and archives it', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto('/register');
  await page.getByLabel('Email').fill(`seller2-${RUN}@example.test`);
  await page.getByLabel('Password (10 to 128 characters)').fill(PASSWORD);
  await page.getByLabel('Your name').fill('Sam Seller');
  await page.getByLabel('sell').check();
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.getByRole('link', { name: 'Sell', exact: true }).click();
  await page.locator('#new-product').click();
  await page.getByLabel('Title').fill('Walnut reading stand');
  await page.getByLabel('Description').fill('Holds a heavy book open.');
  await page.getByLabel('Category').fill('books');
  await page.getByLabel('Price').fill('cheap');
  await page.getByLabel('Stock').fill('3');
  await page.locator('#save-product').click();
  await page.locator('.field-error', { hasText: 'Enter an amount' }).waitFor();
  await shot(page, '22-product-form-errors');
  await page.getByLabel('Price').fill('34.50');
  await page.locator('#save-product').click();
  await page.waitForURL(`${BASE}/sell`);
  const row = page.locator('#my-products tr', { hasText: 'Walnut reading stand' });
  await row.waitFor();
  assert.match(await row.textContent(), /34\.50 EUR/);
  await row.getByRole('link', { name: 'Edit' }).click();
  await page.getByLabel('Stock').fill('5');
  await page.locator('#save-product').click();
  await page.waitForURL(`${BASE}/sell`);
  assert.match(await page.locator('#my-products tr', { hasText: 'Walnut reading stand' }).textContent(), /\b5\b/);
  await shot(page, '14-seller-products');
  await page.locator('#my-products tr', { hasText: 'Walnut reading stand' }).getByRole('button', { name: 'Archive' }).click();
  await page.waitForURL(`${BASE}/sell`);
  assert.equal(await page.locator('#my-products tr', { hasText: 'Walnut reading stand' }).count(), 0);
  await page.close();
});

test('a carrier scans the parcel once, however often the form is sent', async (t) => {
  // Carriers are made by an admin (admin_emails: admin@marketplace.test in tools/scaled/up.sh).
  const admin = 'admin@marketplace.test';
  await api('POST', '/api/auth/register', { email: admin, password: PASSWORD, display_name: 'Admin' }).catch(() => {});
  const { access_token: adminToken } = await api('POST', '/api/auth/login', { email: admin, password: PASSWORD });
  const carrierEmail = `carrier-${RUN}@example.test`;
  const carrier = await api('POST', '/api/auth/register', { email: carrierEmail, password: PASSWORD, display_name: 'Cara Carrier' });
  await api('PUT', `/api/users/${carrier.id}/role`, { role: 'carrier' }, adminToken);
  assert.ok(seeded.orderId, 'the buyer journey placed an order');
  const { items: [shipment] } = await api('GET', `/api/deliveries?order_id=${seeded.orderId}`, undefined, adminToken);

  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto('/login');
  await page.getByLabel('Email').fill(carrierEmail);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.getByRole('link', { name: 'Scan', exact: true }).click();
  await page.waitForURL(`${BASE}/carrier`);
  await shot(page, '23-carrier-lookup');
  await page.getByLabel('Shipment id').fill(shipment.id);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.waitForURL(`${BASE}/carrier/shipments/${shipment.id}`);
  await page.getByLabel('What happened').selectOption('picked_up');
  await page.getByLabel('Where (optional)').fill('Berlin hub');
  const form = await page.locator('#scan-form').evaluate((f) => Object.fromEntries(new FormData(f)));
  const [a, b] = await Promise.all([0, 1].map(() =>
    page.request.post(`/carrier/shipments/${shipment.id}/events`, { form, maxRedirects: 0 })));
  assert.equal(a.status(), 303);
  assert.equal(b.status(), 303);
  await page.goto(`/carrier/shipments/${shipment.id}`);
  assert.equal(await page.locator('#shipment-status').textContent(), 'picked up');
  assert.equal(await page.locator('.history tbody tr').count(), 1, 'one event for one form');
  await shot(page, '15-carrier-scan');
  // Public tracking shows it too.
  await page.goto(`/track?number=${shipment.tracking_number}`);
  await page.locator('#tracking-status', { hasText: 'picked up' }).waitFor();
  await page.close();
});

test('a buyer cancels an order while it has not shipped', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto('/register');
  await page.getByLabel('Email').fill(`buyer2-${RUN}@example.test`);
  await page.getByLabel('Password (10 to 128 characters)').fill(PASSWORD);
  await page.getByLabel('Your name').fill('Bo Buyer');
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.goto(`/products/${seeded.lamp.id}`);
  await page.locator('#add-to-cart').click();
  await page.waitForURL(`${BASE}/cart`);
  // Change the quantity, then remove and re-add: the cart's own forms.
  await page.locator('#cart-lines input[name=quantity]').fill('3');
  await page.getByRole('button', { name: 'Update' }).click();
  assert.match(await page.locator('.total').textContent(), /149\.97 EUR/);
  await page.getByRole('button', { name: 'Remove' }).click();
  await page.locator('main', { hasText: 'Your cart is empty' }).waitFor();
  await page.goto(`/products/${seeded.lamp.id}`);
  await page.locator('#add-to-cart').click();
  await page.locator('#checkout').click();
  await page.getByLabel('Name').fill('Bo Buyer');
  await page.getByLabel('Address', { exact: true }).fill('2 Side Street');
  await page.getByLabel('City').fill('Hamburg');
  await page.getByLabel('Postal code').fill('20095');
  await page.getByLabel('Country (two letters, e.g. DE)').fill('DE');
  await page.locator('#place-order').click();
  await page.waitForURL(/\/orders\/[A-Za-z0-9_-]+$/);
  await page.locator('#cancel-order').click();
  await page.locator('#order-status', { hasText: 'cancelled' }).waitFor();
  assert.equal(await page.locator('#cancel-order').count(), 0);
  await shot(page, '16-cancelled');
  await page.close();
});

test('the cart survives logging in, under a new session id', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto(`/products/${seeded.lamp.id}`);
  await page.locator('#add-to-cart').click();
  await page.waitForURL(`${BASE}/cart`);
  const before = (await context.cookies()).find((c) => c.name === 'mp_session').value;
  await page.getByRole('link', { name: 'Log in' }).click();
  await page.getByLabel('Email').fill(`buyer-${RUN}@example.test`);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/`);
  const after = (await context.cookies()).find((c) => c.name === 'mp_session').value;
  assert.notEqual(after, before, 'signing in starts a new session id (no fixation)');
  await page.goto('/cart');
  await page.locator('#cart-lines', { hasText: 'Brass desk lamp' }).waitFor();
  // The old id is worth nothing now.
  const stale = await fetch(`${BASE}/cart`, { headers: { cookie: `mp_session=${before}` } });
  assert.match(await stale.text(), /Your cart is empty/);
  await page.close();
});

test('the cookie is Secure when the ingress says the browser used https', async () => {
  const res = await fetch(`${BASE}/login`, { headers: { 'x-forwarded-proto': 'https' } });
  const [cookie] = res.headers.getSetCookie();
  assert.match(cookie, /^mp_session=[A-Za-z0-9_-]{43}; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
  const plain = await fetch(`${BASE}/login`);
  assert.doesNotMatch(plain.headers.getSetCookie()[0], /Secure/);
  // A home page visit by a stranger stores nothing and sets no cookie.
  const home = await fetch(`${BASE}/`);
  assert.deepEqual(home.headers.getSetCookie(), []);
});

test('a form without its CSRF token is refused with a page in words', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto(`/products/${seeded.lamp.id}`);
  // Without the token (as a cross-site form would post): removed from the real form.
  await page.locator('form.add input[name=csrf]').evaluate((el) => el.remove());
  const [res] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/cart/add')), page.locator('#add-to-cart').click()]);
  assert.equal(res.status(), 403);
  await page.locator('#problem-detail').waitFor();
  assert.match(await page.locator('#problem-detail').textContent(), /did not come from this site/);
  assert.ok(!(await page.content()).includes('"status"'), 'never raw JSON');
  await shot(page, '11-csrf-refused');
  // With another session's token: refused too; and the cart stayed empty.
  const wrong = await page.request.post('/cart/add', { form: { csrf: 'x'.repeat(43), product_id: seeded.lamp.id, quantity: '1' }, maxRedirects: 0 });
  assert.equal(wrong.status(), 403);
  await page.goto('/cart');
  assert.match(await page.locator('main').textContent(), /Your cart is empty/);
  await page.close();
});

test('a product titled <script>alert(1)</script> renders as inert text', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto(`/products/${seeded.xss.id}`);
  assert.equal(await page.locator('#product-title').textContent(), XSS_TITLE);
  assert.equal(await page.locator('script').count(), 0, 'no script element');
  assert.equal(await page.locator('img').count(), 0, 'the description made no element either');
  await page.goto('/search?q=alert');
  assert.equal(await page.locator('script').count(), 0);
  await page.goto('/');
  assert.equal(await page.locator('script').count(), 0);
  await page.locator('.card-title', { hasText: XSS_TITLE }).first().waitFor();
  await shot(page, '12-xss-inert');
  await page.close();
});

test('unknown pages and products answer 404 pages in words', async (t) => {
  const page = await freshPage(t);
  const res = await page.goto('/products/01a234d4-0000-7000-8000-000000000000');
  assert.equal(res.status(), 404);
  assert.ok((await page.locator('#problem-detail').textContent()).length > 0);
  assert.ok(!(await page.content()).includes('application/problem+json'));
  const nowhere = await page.goto('/no/such/page');
  assert.equal(nowhere.status(), 404);
  await shot(page, '13-not-found');
  await page.close();
});

test('a seller lists a product, a buyer finds and buys it, the seller sees the sale', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  const seller = `seller3-${RUN}@example.test`;
  await registerInBrowser(page, seller, 'Sol Seller', true);
  await page.goto('/sell/new');
  const title = `Cedar plant stand ${RUN}`;
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Description').fill('Three tiers of cedar for a sunny window.');
  await page.getByLabel('Category').fill('garden');
  await page.getByLabel('Price').fill('27.00');
  await page.getByLabel('Stock').fill('6');
  await shot(page, '17-product-form');
  await page.locator('#save-product').click();
  await page.waitForURL(`${BASE}/sell`);
  await page.locator('#my-products tr', { hasText: title }).waitFor();
  await page.locator('#logout').click();
  await page.waitForURL(`${BASE}/`);

  // A buyer finds it by searching (the product service's index may take a moment).
  await registerInBrowser(page, `buyer3-${RUN}@example.test`, 'Cy Buyer');
  const hit = page.locator('#results a', { hasText: title });
  for (let i = 0; i < 20; i++) {
    await page.goto(`/search?q=${encodeURIComponent('cedar plant stand')}&category=garden&in_stock=true`);
    if (await hit.count()) break;
    await page.waitForTimeout(500);
  }
  await hit.first().waitFor();
  await shot(page, '18-search-filters');
  await hit.first().click();
  await page.locator('#add-to-cart').click();
  await page.waitForURL(`${BASE}/cart`);
  const orderPath = await checkOut(page, 'Cy Buyer', '3 Garden Row', 'Munich', '80331');
  assert.match(orderPath, /^\/orders\//);
  await page.locator('#logout').click();
  await page.waitForURL(`${BASE}/`);

  // The seller's sales page lists the line.
  await page.goto('/login?next=%2Fsell%2Fsales');
  await page.getByLabel('Email').fill(seller);
  await page.getByLabel('Password').fill(PASSWORD);
  await shot(page, '19-login');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/sell/sales`);
  const sale = page.locator('#sales tbody tr', { hasText: title });
  await sale.waitFor();
  assert.match(await sale.textContent(), /27\.00 EUR/);
  assert.match(await sale.textContent(), /Munich/);
  await shot(page, '20-sales');
  await page.close();
});

test('a session whose record is gone, or whose login was revoked, leads to the login page', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  const email = `buyer4-${RUN}@example.test`;
  await registerInBrowser(page, email, 'Di Buyer');

  // The server-side record disappears (expired and swept, or removed): the cookie is worthless.
  deleteSession(await sessionCookie());
  const gone = await page.goto('/orders');
  assert.equal(gone.status(), 200);
  assert.match(page.url(), /\/login\?next=%2Forders&reason=ended$/);
  assert.match(await page.locator('#message').textContent(), /session has ended/);
  await page.locator('#problem-detail').waitFor({ state: 'detached' });
  await shot(page, '21-session-ended');

  // Signed in again; then the login is revoked at the user service (logout elsewhere, theft
  // detection) and the access token runs out: the refresh is refused → the login page.
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/orders`);
  const sid = await sessionCookie();
  const { refresh_token: rt } = readSession(sid).signed_in;
  await api('POST', '/api/auth/logout', { refresh_token: rt });
  expireAccessToken(sid);
  await page.goto('/orders');
  assert.match(page.url(), /\/login\?next=%2Forders&reason=ended$/);
  assert.match(await page.locator('#message').textContent(), /session has ended/);
  assert.equal(readSession(sid).signed_in, null, 'the session is signed out');
  await page.goto('/');
  await page.getByRole('link', { name: 'Log in' }).waitFor();
  await page.close();
});

test('two page loads that find the access token expired refresh it once', async (t) => {
  await context.clearCookies();
  const page = await freshPage(t);
  await registerInBrowser(page, `buyer5-${RUN}@example.test`, 'Ed Buyer');
  const sid = await sessionCookie();
  let before = readSession(sid).signed_in;
  const load = () => fetch(`${BASE}/orders`, { headers: { cookie: `mp_session=${sid}` }, redirect: 'manual' });
  for (let round = 1; round <= 3; round++) {
    expireAccessToken(sid);
    const answers = await Promise.all([load(), load(), load()]);
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200], `round ${round}: every load is signed in`);
    for (const a of answers) assert.match(await a.text(), /My orders/);
    const now = readSession(sid).signed_in;
    assert.ok(now, `round ${round}: still signed in`);
    assert.notEqual(now.refresh_token, before.refresh_token, 'refreshed');
    assert.ok(now.access_expires_at > Date.now() / 1000 + 600, 'a new access token');
    assert.equal(readSession(sid).refreshing ?? null, null, 'the lock is let go');
    before = now;
  }
  // The login survived every round: a reused refresh token would have revoked it.
  await page.goto('/orders');
  assert.equal(new URL(page.url()).pathname, '/orders');
  await page.close();
});

test('an admin finds a user and makes them a carrier; their next sign-in shows carrier pages', async (t) => {
  // The e2e app's admin_emails is admin@marketplace.test (tools/scaled/up.sh).
  const admin = 'admin@marketplace.test';
  await api('POST', '/api/auth/register', { email: admin, password: PASSWORD, display_name: 'Admin' }).catch(() => {});
  const email = `newcarrier-${RUN}@example.test`;
  const user = await api('POST', '/api/auth/register', { email, password: PASSWORD, display_name: 'Nia Newcarrier' });

  // Not an admin: the pages are refused in words.
  await context.clearCookies();
  const page = await freshPage(t);
  await page.goto('/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/`);
  assert.equal(await page.getByRole('link', { name: 'Users', exact: true }).count(), 0, 'no admin link for a buyer');
  for (const path of ['/admin', `/admin/users/${user.id}`]) {
    const refused = await page.goto(path);
    assert.equal(refused.status(), 403, path);
    assert.match(await page.locator('#problem-detail').textContent(), /administrators only/);
  }
  const csrf = await page.locator('#logout').evaluate((b) => b.form.elements.csrf.value);
  const post = await page.request.post(`/admin/users/${user.id}/role`, { form: { csrf, role: 'admin' }, maxRedirects: 0 });
  assert.equal(post.status(), 403, 'a buyer cannot change a role');
  await page.locator('#logout').click();
  await page.waitForURL(`${BASE}/`);

  // The admin: the navigation's Users link, find by id, change the role to carrier.
  await page.goto('/login');
  await page.getByLabel('Email').fill(admin);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.getByRole('link', { name: 'Users', exact: true }).click();
  await page.waitForURL(`${BASE}/admin`);
  await shot(page, '24-admin-find');
  await page.getByLabel('User id').fill('not-an-id');
  await page.getByRole('button', { name: 'Find' }).click();
  await page.locator('#message', { hasText: 'A user id looks like' }).waitFor();
  await page.getByLabel('User id').fill(user.id);
  await page.getByRole('button', { name: 'Find' }).click();
  await page.waitForURL(`${BASE}/admin/users/${user.id}`);
  assert.equal(await page.locator('#user-email').textContent(), email);
  assert.equal(await page.locator('#user-role').textContent(), 'buyer');
  // Without its CSRF token the form changes nothing.
  const bare = await page.request.post(`/admin/users/${user.id}/role`, { form: { role: 'admin' }, maxRedirects: 0 });
  assert.equal(bare.status(), 403);
  await page.getByLabel('New role').selectOption('carrier');
  const form = await page.locator('#role-form').evaluate((f) => Object.fromEntries(new FormData(f)));
  const answer = await page.request.post(`/admin/users/${user.id}/role`, { form, maxRedirects: 0 });
  assert.equal(answer.status(), 303);
  assert.equal(answer.headers().location, `/admin/users/${user.id}?changed=role`);
  await page.locator('#change-role').click();
  await page.waitForURL(`${BASE}/admin/users/${user.id}?changed=role`);
  assert.match(await page.locator('#notice').textContent(), /Nia Newcarrier is now a carrier/);
  assert.equal(await page.locator('#user-role').textContent(), 'carrier');
  await shot(page, '25-admin-user');
  await page.locator('#logout').click();
  await page.waitForURL(`${BASE}/`);

  // The user's next sign-in: a carrier's pages.
  await page.goto('/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/`);
  await page.getByRole('link', { name: 'Scan', exact: true }).click();
  await page.waitForURL(`${BASE}/carrier`);
  await page.getByRole('heading', { name: 'Scan a parcel' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'My orders', exact: true }).count(), 0, 'a carrier, not a buyer');
  await page.close();
});
