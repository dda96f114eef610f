// A real OpenID provider for Coffer's sign-in tests: `oidc-provider` (OpenID Certified), with its
// development sign-in and consent pages, serving the accounts a test declares.
//
// Started by the test harness (`tests/e2e/common/oidc.rs`): it listens on 127.0.0.1 at a free
// port and prints one line of JSON, `{"issuer": "http://127.0.0.1:PORT"}`. The provider itself
// is built once the test has told it Coffer's addresses (`POST /__test/client`), since Coffer's
// port is known only after Coffer starts.
//
// A certified provider issues only good tokens, so the bad ones are forged here, where a test
// asks for them: `POST /__test/forge {"mode": …}` rewrites the ID token of the next successful
// token response (signed by a second key of this script's, or with altered claims re-signed
// by the provider's own key). The provider's data stays in memory; nothing is written to disk.
//
// Control routes (JSON bodies, answered 204):
//   POST /__test/client   {"redirect_uris": [...], "post_logout_redirect_uris": [...]}
//   POST /__test/accounts {"sub": "...", "email": "...", "groups": [...], "email_verified": true}
//   POST /__test/forge    {"mode": "other-key" | "other-key-same-kid" | "expired" | "nonce"
//                           | "audience" | "issuer"}
//   POST /__test/rotate   a new signing key replaces the old one (a new `kid`)
//   POST /__test/userinfo-only  {"on": true}: the scopes' claims (address, groups) only from the
//                         userinfo endpoint, not in the ID token (as some providers are set up)

import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

export const CLIENT_ID = 'coffer';
export const CLIENT_SECRET = 'coffer-oidc-test-secret';

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

let generation = 1;
let signing = await signingKey(`provider-${generation}`);
const rogue = await signingKey('rogue');
const accounts = new Map();
let client = null;
let provider = null;
let handle = null;
let forge = null;
let userinfoOnly = false;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
// `localhost`, while Coffer is at 127.0.0.1: two sites, as in use.
const issuer = `http://localhost:${server.address().port}`;

function claimsOf(sub) {
  const known = accounts.get(sub) ?? {};
  return {
    sub,
    email: known.email ?? `${sub}@example.org`,
    email_verified: known.email_verified ?? true,
    name: known.name ?? sub,
    groups: known.groups ?? [],
  };
}

function build() {
  const built = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signing] },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => claimsOf(sub),
    }),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // The scopes' claims in the ID token too, as Keycloak, Entra ID and Authentik send them
    // (unless a test asks for them from the userinfo endpoint only).
    conformIdTokenClaims: userinfoOnly,
    pkce: { required: () => true },
    ttl: {
      AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 600, Interaction: 600,
      Session: 3600,
    },
    cookies: { keys: ['coffer-oidc-test-cookies'] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
  });
  // The forgeries: the next good token response's ID token is replaced by a bad one.
  built.use(async (ctx, next) => {
    await next();
    if (forge && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
      ctx.body = { ...ctx.body, id_token: await forged(ctx.body.id_token, forge) };
      forge = null;
    }
  });
  return built;
}

async function forged(idToken, mode) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = signing;
  switch (mode) {
    case 'other-key':
      key = rogue;
      break;
    case 'other-key-same-kid':
      key = { ...rogue, kid: signing.kid };
      break;
    case 'expired':
      claims.iat = now - 7200;
      claims.exp = now - 3600;
      break;
    case 'nonce':
      claims.nonce = 'not-the-nonce-coffer-sent';
      break;
    case 'audience':
      claims.aud = 'another-client';
      break;
    case 'issuer':
      claims.iss = 'https://another-issuer.example';
      break;
    default:
      throw new Error(`unknown forgery ${mode}`);
  }
  const privateKey = await jose.importJWK(key, 'RS256');
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
    .sign(privateKey);
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

async function control(req, res) {
  const asked = await body(req);
  switch (req.url) {
    case '/__test/client':
      client = asked;
      provider = build();
      handle = provider.callback();
      break;
    case '/__test/accounts':
      accounts.set(asked.sub, asked);
      break;
    case '/__test/forge':
      forge = asked.mode;
      break;
    case '/__test/userinfo-only':
      userinfoOnly = Boolean(asked.on);
      provider = build();
      handle = provider.callback();
      break;
    case '/__test/rotate':
      generation += 1;
      signing = await signingKey(`provider-${generation}`);
      provider = build();
      handle = provider.callback();
      break;
    default:
      res.writeHead(404).end();
      return;
  }
  res.writeHead(204).end();
}

server.on('request', (req, res) => {
  if (req.url.startsWith('/__test/')) {
    control(req, res).catch((err) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
    });
  } else if (provider) {
    handle(req, res);
  } else {
    res.writeHead(503, { 'content-type': 'text/plain' }).end('no client registered yet');
  }
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// The harness closes stdin when it is done: the provider ends with it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
