"""Short-lived signed tokens for the API (PyJWT, HS256), with a refresh path.

Why PyJWT: JSON Web Tokens are the format every HTTP client, proxy and browser
library understands, PyJWT is the maintained reference implementation for Python, and
it checks signatures in constant time; we pin the algorithm list to ``HS256`` on
decode so a token cannot choose its own algorithm (``none``, or RS/HS confusion).

- An *access* token (default 15 min) authenticates requests. A *refresh* token
  (default 12 h) gets a new pair once: it is single use (its id is remembered until
  it expires), so a stolen refresh token that is used twice stops working.
- Every token names the user, the user's ``generation`` (see the users file) and the
  audience ``petra-api:<instance>``; a password, role or state change bumps the
  generation and so revokes every token issued before.
- The signing key comes from a file, a systemd credential or the environment; without
  one the API makes a random key at start, and tokens do not survive a restart of the
  API process.
- Expiry is checked here against an injectable clock (tests run a fake clock).
- A verified access token is remembered (up to :data:`CACHE_MAX`, until it expires):
  the next request with the same token skips the base64 and HMAC work, which was a
  fifth of the cost of a small authenticated read. Revocation does not depend on the
  cache: the caller checks the user's generation on every request.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from petra.security._errors import AuthenticationError
from petra.security._secrets import Secret

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
MAX_TOKEN_CHARS = 4096
CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Claims:
    user: str
    generation: int
    kind: str
    jti: str
    expires: float


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


class TokenIssuer:
    def __init__(self, secret: Secret | None, audience: str, *, access_ttl_s: float = 900,
                 refresh_ttl_s: float = 43200,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = secret.reveal() if secret is not None else secrets.token_bytes(32)
        self.audience = audience
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.clock = clock
        self._used_refresh: dict[str, float] = {}  # jti -> expiry
        self._verified: OrderedDict[str, Claims] = OrderedDict()  # access token -> claims

    def issue(self, user: str, generation: int) -> TokenPair:
        now = self.clock()
        return TokenPair(self._encode(user, generation, ACCESS, now, self.access_ttl_s),
                         self._encode(user, generation, REFRESH, now, self.refresh_ttl_s),
                         int(self.access_ttl_s), int(self.refresh_ttl_s))

    def _encode(self, user: str, generation: int, kind: str, now: float, ttl: float) -> str:
        claims = {"sub": user, "gen": generation, "typ": kind, "aud": self.audience,
                  "iat": int(now), "exp": int(now + ttl), "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str, kind: str = ACCESS) -> Claims:
        """The claims of a valid, unexpired token of ``kind``; AuthenticationError
        (without detail an attacker could use) otherwise."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationError("invalid token")
        known = self._verified.get(token) if kind == ACCESS else None
        if known is not None:
            if self.clock() >= known.expires:
                del self._verified[token]
                raise AuthenticationError("token expired")
            return known
        try:
            data = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                              audience=self.audience,
                              options={"require": ["sub", "gen", "typ", "exp", "iat", "jti"],
                                       "verify_exp": False, "verify_iat": False})
        except jwt.PyJWTError:
            raise AuthenticationError("invalid token") from None
        sub, gen, typ, exp, jti = (data.get("sub"), data.get("gen"), data.get("typ"),
                                   data.get("exp"), data.get("jti"))
        if (not isinstance(sub, str) or not isinstance(gen, int) or typ != kind
                or not isinstance(exp, int) or not isinstance(jti, str)):
            raise AuthenticationError("invalid token")
        if self.clock() >= exp:
            raise AuthenticationError("token expired")
        claims = Claims(sub, gen, typ, jti, float(exp))
        if kind == ACCESS:
            self._verified[token] = claims
            while len(self._verified) > CACHE_MAX:
                self._verified.popitem(last=False)
        return claims

    def use_refresh(self, token: str) -> Claims:
        """Decode a refresh token and spend it (a second use is refused)."""
        claims = self.decode(token, REFRESH)
        now = self.clock()
        for jti in [j for j, exp in self._used_refresh.items() if exp <= now]:
            del self._used_refresh[jti]
        if claims.jti in self._used_refresh:
            raise AuthenticationError("refresh token already used")
        self._used_refresh[claims.jti] = claims.expires
        return claims

    def revoke_refresh(self, token: str) -> None:
        """Spend a refresh token without issuing a new pair (logout)."""
        self.use_refresh(token)
