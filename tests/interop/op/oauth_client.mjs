// Strict OAuth clients (panva's openid-client 6 and oauth4webapi 3) against Portcullis'
// authorization server (tests/oauth.rs), with their checks on: discovery (the issuer must
// match), client credentials, and validation of the RFC 9068 access token as a resource server
// would do it (signature from the JWKS, typ at+jwt, iss, aud, exp, iat, jti, client_id, sub).
//
//   echo '{"issuer":"https://localhost:PORT","clientId":"...","secret":"...",
//          "audience":"https://api.test"}' | NODE_EXTRA_CA_CERTS=ca.crt node oauth_client.mjs
//
// Prints one JSON line per check: {"check": NAME, "ok": bool, "detail": ...}.

import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
}));

function report(check, ok, detail) {
  process.stdout.write(`${JSON.stringify({ check, ok: !!ok, detail })}\n`);
}

async function run(check, f) {
  try {
    await f();
  } catch (e) {
    report(check, false, `${e.name}: ${e.message} ${e.code ?? ''} ${JSON.stringify(e.cause ?? null)}`);
  }
}

for (const algorithm of ['oidc', 'oauth2']) {
  await run(`openid_client_${algorithm}`, async () => {
    const config = await client.discovery(
      new URL(input.issuer),
      input.clientId,
      undefined,
      client.ClientSecretBasic(input.secret),
      { algorithm },
    );
    const md = config.serverMetadata();
    if (md.issuer !== input.issuer) throw new Error(`issuer ${md.issuer}`);
    const tokens = await client.clientCredentialsGrant(config, {
      scope: 'read',
      resource: input.audience,
    });
    if (tokens.token_type.toLowerCase() !== 'bearer') throw new Error(`token_type ${tokens.token_type}`);
    // As a resource server: RFC 9068 validation with the server's JWKS.
    const req = new Request('https://api.test/x', {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    const claims = await oauth.validateJwtAccessToken(md, req, input.audience);
    const ok = claims.client_id === input.clientId && claims.sub === input.clientId
      && claims.scope === 'read' && claims.iss === input.issuer;
    report(`openid_client_${algorithm}`, ok, claims);
  });
}
