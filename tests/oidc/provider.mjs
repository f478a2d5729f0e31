// A real OpenID provider for the tests: panva's oidc-provider (OpenID
// certified), configured as an organisation's identity provider would be
// for lbasedb-proxy. Started once per test run by tests/api/oidc.rs:
//
//   node tests/oidc/provider.mjs        prints "issuer http://127.0.0.1:PORT"
//
// Clients: `lbasedb-proxy` (the admin's login, authorization code + PKCE),
// `other-app` (another relying party, whose codes the proxy must refuse),
// `ingest` (client credentials, JWT access tokens for the proxy's API).
// The login page is the provider's own (its development interactions):
// any login name, any password; the account's claims are the test's.
//
// Test-only controls under /__test/, which a real provider does not have:
// the claims of an account, a rotation of the signing key, how often the
// keys were fetched, and a token signed with the provider's current key
// from claims (and a key id) the test chooses: expired, wrong-audience,
// wrong-issuer and unknown-key tokens.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair, SignJWT, importJWK } from 'jose';

const AUDIENCE = 'lbasedb-proxy';
const RESOURCE = 'urn:lbasedb-proxy';
const accounts = new Map();
let jwksFetches = 0;
let keys = [];
let current;

async function newKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function configuration() {
  return {
    clients: [
      {
        client_id: 'lbasedb-proxy',
        client_secret: 'proxy-secret',
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/admin/oidc/callback/'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
      {
        client_id: 'other-app',
        client_secret: 'other-secret',
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/admin/oidc/callback/'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
      {
        client_id: 'ingest',
        client_secret: 'ingest-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys },
    scopes: ['openid', 'profile', 'email', 'groups', 'api'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // The ID token carries the claims of the scopes granted, as Keycloak's
    // and Entra ID's do, so the relying party needs no userinfo call.
    conformIdTokenClaims: false,
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, preferred_username: sub, ...(accounts.get(sub) ?? {}) }),
    }),
    // A first-party client: no consent screen, the grant made at login.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email groups');
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async () => ({
          scope: 'api',
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    ttl: { AccessToken: 600, ClientCredentials: 600, IdToken: 600 },
  };
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

async function control(req, res, issuer) {
  const body = await readJson(req);
  if (req.url === '/__test/account') {
    accounts.set(body.sub, body.claims ?? {});
    return json(res, 200, { ok: true });
  }
  if (req.url === '/__test/rotate') {
    keys = [await newKey(), ...keys];
    current = logged(new Provider(issuer, configuration()));
    return json(res, 200, { kid: keys[0].kid });
  }
  if (req.url === '/__test/jwks-fetches') {
    return json(res, 200, { fetches: jwksFetches });
  }
  if (req.url === '/__test/sign') {
    const jwk = keys[0];
    const kid = body.kid ?? jwk.kid;
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: issuer, aud: AUDIENCE, iat: now, exp: now + 300, ...body.claims };
    for (const [k, v] of Object.entries(claims)) if (v === null) delete claims[k];
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .sign(await importJWK(jwk, 'RS256'));
    return json(res, 200, { token });
  }
  return json(res, 404, { error: 'unknown control' });
}

// Errors the provider would answer 500 for, on standard error (the tests
// keep it in OIDC_PROVIDER_LOG when set).
function logged(provider) {
  provider.on('server_error', (_ctx, err) => console.error(err));
  return provider;
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/')) {
    const issuer = `http://127.0.0.1:${server.address().port}`;
    control(req, res, issuer).catch((e) => json(res, 500, { error: String(e) }));
    return;
  }
  if (req.url === '/jwks') jwksFetches += 1;
  current.callback()(req, res);
});

// The tests hold this process's standard input: when they end, so does it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

keys = [await newKey()];
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  current = logged(new Provider(issuer, configuration()));
  console.log(`issuer ${issuer}`);
});
