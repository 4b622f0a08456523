package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/moltgate/moltgate/api"
)

const testAud = "moltgate-aud-tag"

// idp is a local identity provider: a JWKS endpoint with an RSA and an EC
// key, counting how often its keys are fetched.
type idp struct {
	url     string
	rsaKey  *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
	fetches atomic.Int64
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{}
	p.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	p.ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	store := jwkset.NewMemoryStorage()
	for kid, pub := range map[string]any{"rsa-1": &p.rsaKey.PublicKey, "ec-1": &p.ecKey.PublicKey} {
		alg := jwkset.AlgRS256
		if kid == "ec-1" {
			alg = jwkset.AlgES256
		}
		jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg}})
		if err != nil {
			t.Fatal(err)
		}
		store.KeyWrite(context.Background(), jwk)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cdn-cgi/access/certs" {
			http.NotFound(w, r)
			return
		}
		p.fetches.Add(1)
		b, _ := store.JSONPublic(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *idp) claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": p.url, "aud": []string{testAud}, "email": "owner@example.com",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func (p *idp) sign(t *testing.T, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAccess(t *testing.T) {
	p := newIDP(t)
	access, err := api.NewAccess(t.Context(), p.url, testAud, nil)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&p.rsaKey.PublicKey)
	valid := p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(nil))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+p.url+`","aud":["`+testAud+`"],"email":"attacker@example.com","exp":9999999999}`)) + "." + parts[2]
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, p.claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for name, tc := range map[string]struct {
		token string
		ok    bool
	}{
		"ValidRS256":      {valid, true},
		"ValidES256":      {p.sign(t, jwt.SigningMethodES256, "ec-1", p.ecKey, p.claims(nil)), true},
		"Expired":         {p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), false},
		"NotYetValid":     {p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), false},
		"WrongAudience":   {p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["aud"] = []string{"someone-else"} })), false},
		"WrongIssuer":     {p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.cloudflareaccess.com" })), false},
		"NoExpiry":        {p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { delete(c, "exp") })), false},
		"AlgNone":         {none, false},
		"HS256WithPubKey": {p.sign(t, jwt.SigningMethodHS256, "rsa-1", pubDER, p.claims(nil)), false},
		"Tampered":        {tampered, false},
		"Garbage":         {"not.a.jwt", false},
		"Empty":           {"", false},
	} {
		t.Run(name, func(t *testing.T) {
			email, err := access.Verify(tc.token)
			if tc.ok && (err != nil || email != "owner@example.com") {
				t.Fatalf("refused a valid token: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("accepted a bad token as %s", email)
			}
		})
	}

	t.Run("UnknownKidRefreshesOnce", func(t *testing.T) {
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		before := p.fetches.Load()
		for i := 0; i < 3; i++ {
			if _, err := access.Verify(p.sign(t, jwt.SigningMethodRS256, "rotated-kid", other, p.claims(nil))); err == nil {
				t.Fatal("accepted a token signed by an unknown key")
			}
		}
		if n := p.fetches.Load() - before; n != 1 {
			t.Fatalf("the keys were fetched %d times for an unknown kid, want 1 (rate-limited refresh)", n)
		}
	})

	t.Run("Middleware", func(t *testing.T) {
		gin.SetMode(gin.ReleaseMode)
		r := gin.New()
		r.GET("/api/admin/whoami", access.Middleware(), func(c *gin.Context) { c.String(200, c.GetString(api.ActorKey)) })
		srv := httptest.NewServer(r)
		defer srv.Close()
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		do := func(header, cookie, accept string) (int, string) {
			req, _ := http.NewRequest("GET", srv.URL+"/api/admin/whoami", nil)
			if header != "" {
				req.Header.Set("Cf-Access-Jwt-Assertion", header)
			}
			if cookie != "" {
				req.AddCookie(&http.Cookie{Name: "CF_Authorization", Value: cookie})
			}
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			buf := new(strings.Builder)
			b := make([]byte, 4096)
			n, _ := res.Body.Read(b)
			buf.Write(b[:n])
			return res.StatusCode, buf.String() + res.Header.Get("Location")
		}
		if code, body := do(valid, "", ""); code != 200 || body != "owner@example.com" {
			t.Fatalf("header: %d %s", code, body)
		}
		if code, body := do("", valid, ""); code != 200 || body != "owner@example.com" {
			t.Fatalf("cookie: %d %s", code, body)
		}
		if code, body := do("", "", ""); code != 401 || !strings.Contains(body, `"error"`) {
			t.Fatalf("API without token: %d %s", code, body)
		}
		if code, body := do(tampered, "", "text/html"); code != http.StatusFound || !strings.Contains(body, "/cdn-cgi/access/login") {
			t.Fatalf("browser with a bad token: %d %s", code, body)
		}
	})
}

func TestAccess_TeamDomain(t *testing.T) {
	for domain, ok := range map[string]bool{
		"myteam.cloudflareaccess.com":         true,
		"https://myteam.cloudflareaccess.com": true,
		"http://127.0.0.1:9999":               true,
		"http://myteam.cloudflareaccess.com":  false,
		"":                                    false,
	} {
		_, err := api.NewAccess(t.Context(), domain, testAud, nil)
		if (err == nil) != ok {
			t.Errorf("%q: err = %v", domain, err)
		}
	}
}
