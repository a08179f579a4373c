// A real OpenID Connect provider (node-oidc-provider, OpenID Certified) on loopback, for the SSO tests.
//
// Configuration comes as JSON in the OIDC_TEST_CONFIG environment variable:
//   {"port": 5555,
//    "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."]}],
//    "accounts": {"alice": {"email": "alice@example.org", "email_verified": true}}}
// The provider's built-in development sign-in page accepts any login name with any password; the account
// id is that name, and its claims are the configured ones, or else a verified email: the name itself when it
// looks like an address, otherwise <name>@unknown.example. It prints "ready <issuer>" once it listens.
import Provider from "oidc-provider";

const config = JSON.parse(process.env.OIDC_TEST_CONFIG);
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
    ...c,
  })),
  async findAccount(ctx, id) {
    const email = id.includes("@") ? id : `${id}@unknown.example`;
    const claims = config.accounts[id] ?? { email, email_verified: true };
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, ...claims };
      },
    };
  },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username"],
  },
  // Claims in the ID token itself (tre reads only the verified ID token, not the userinfo endpoint).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: [config.cookie_key ?? "oidc-test-cookie-key"] },
});
// Plain http on loopback: the test never leaves this machine.
provider.proxy = false;
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(config.port, "127.0.0.1", () => console.log(`ready ${issuer}`));
