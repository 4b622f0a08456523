package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	moltgate "github.com/moltgate/moltgate"
	"golang.org/x/time/rate"
)

// accessLeeway tolerates small clock differences on exp and nbf.
const accessLeeway = 30 * time.Second

// Access verifies Cloudflare Access JWTs: signature against the team's
// published keys (cached; an unknown kid triggers a rate-limited refresh),
// issuer, audience, expiry. Only RS256 and ES256 are accepted, so `none`
// and HMAC tokens (signed, say, with a public key as the secret) fail.
type Access struct {
	issuer   string
	audience string
	keys     keyfunc.Keyfunc
}

// NewAccess prepares verification for a team domain ("myteam.cloudflareaccess.com"
// or "https://…"; "http://" only for a loopback host, for local identity
// providers and tests) and an application audience tag. The keys are
// fetched in the background until ctx ends.
func NewAccess(ctx context.Context, teamDomain, audience string, client *http.Client) (*Access, error) {
	if teamDomain == "" || audience == "" {
		return nil, moltgate.Errorf(moltgate.EINVALID, "Cloudflare Access needs CF_ACCESS_TEAM_DOMAIN and CF_ACCESS_AUD")
	}
	base := strings.TrimRight(teamDomain, "/")
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, moltgate.Errorf(moltgate.EINVALID, "CF_ACCESS_TEAM_DOMAIN %q is not a host name", teamDomain)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, moltgate.Errorf(moltgate.EINVALID, "CF_ACCESS_TEAM_DOMAIN may use http:// only for a loopback host")
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{base + "/cdn-cgi/access/certs"}, keyfunc.Override{
		Client:            client,
		RefreshInterval:   time.Hour,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		RateLimitWaitMax:  time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot set up Cloudflare Access keys: %w", err)
	}
	return &Access{issuer: base, audience: audience, keys: keys}, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Verify checks a token and returns the authenticated email.
func (a *Access) Verify(token string) (string, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, a.keys.Keyfunc,
		jwt.WithValidMethods([]string{"RS256", "ES256"}),
		jwt.WithIssuer(a.issuer),
		jwt.WithAudience(a.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(accessLeeway),
	)
	if err != nil {
		return "", moltgate.Errorf(moltgate.EUNAUTHORIZED, "Cloudflare Access token refused: %v", err)
	}
	email, _ := claims["email"].(string)
	if email == "" {
		return "", moltgate.Errorf(moltgate.EUNAUTHORIZED, "Cloudflare Access token has no email")
	}
	return email, nil
}

// ActorKey is where the middleware leaves the authenticated email.
const ActorKey = "moltgate.actor"

// accessToken reads the JWT from the header Cloudflare sets, or from the
// cookie a browser carries.
func accessToken(r *http.Request) string {
	if t := r.Header.Get("Cf-Access-Jwt-Assertion"); t != "" {
		return t
	}
	if c, err := r.Cookie("CF_Authorization"); err == nil {
		return c.Value
	}
	return ""
}

// Middleware guards a route group: a valid token sets the actor; a browser
// without one is sent to the team's login, an API client gets 401 JSON.
func (a *Access) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		email, err := a.Verify(accessToken(c.Request))
		if err != nil {
			if wantsHTML(c.Request) {
				c.Redirect(http.StatusFound, a.issuer+"/cdn-cgi/access/login?redirect_url="+url.QueryEscape(c.Request.URL.Path))
				c.Abort()
				return
			}
			writeError(c, err)
			return
		}
		c.Set(ActorKey, email)
		c.Next()
	}
}
