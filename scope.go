package moltgate

// Operator scopes, as OpenClaw's gateway protocol names them.
const (
	ScopeRead    = "operator.read"
	ScopeWrite   = "operator.write"
	ScopeAdmin   = "operator.admin"
	ScopePairing = "operator.pairing"
)

// OwnerScopes are held by the owner acting through the admin (behind
// Cloudflare Access or on loopback with the gateway token): admin implies
// every other scope.
var OwnerScopes = []string{ScopeAdmin}

// ScopesAllow reports whether a holder of held may act with scope want:
// admin implies every scope, and write implies read.
func ScopesAllow(held []string, want string) bool {
	if want == "" {
		return true
	}
	for _, s := range held {
		if s == want || s == ScopeAdmin || (want == ScopeRead && s == ScopeWrite) {
			return true
		}
	}
	return false
}

// MissingScopes returns the scopes of want that held does not allow: a
// device may grant only scopes it holds itself.
func MissingScopes(held, want []string) []string {
	var missing []string
	for _, s := range want {
		if !ScopesAllow(held, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
