// Package memberkey is the speakers' gossip key: where it is kept, how it
// is written, and the steps that rotate it without an outage. The plugin
// writes it and the speakers read it; both go through here.
package memberkey

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	// SecretName is the Secret in porter-system that holds the keys.
	SecretName = "porter-memberlist"
	// DataKey is the Secret's data key: one base64 key a line, the
	// primary first. Gossip is encrypted with the primary and accepted
	// under any of them, which is what lets a rotation pass without an
	// outage.
	DataKey = "keys"
	// RotationAnnotation names, on the Secret, the fingerprint of the key
	// a rotation is moving to, so that an interrupted rotation resumes.
	RotationAnnotation = "porter.kubesphere.io/rotating-to"
	// Size is the length of a new key: AES-256.
	Size = 32
)

// New makes a random key.
func New() ([]byte, error) {
	k := make([]byte, Size)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("make a member key: %w", err)
	}
	return k, nil
}

// Parse reads the Secret's data: at least one key, each of 16, 24 or 32
// bytes, none twice.
func Parse(data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("key on line %d is not base64: %w", i+1, err)
		}
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("key on line %d has %d bytes; want 16, 24 or 32", i+1, len(k))
		}
		for _, o := range keys {
			if bytes.Equal(o, k) {
				return nil, fmt.Errorf("key on line %d is there twice", i+1)
			}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	return keys, nil
}

// Format writes keys as Parse reads them.
func Format(keys [][]byte) []byte {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Fingerprint names a key without giving it away.
func Fingerprint(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:6])
}

// Fingerprints names keys in order.
func Fingerprints(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = Fingerprint(k)
	}
	return out
}

// NextStep is the rotation's next state of the keys, from where they are
// to target (a key that is not yet primary, or the primary once alone):
//  1. target added beside the old keys, which stay primary: every speaker
//     learns to read it before anyone writes with it;
//  2. target made primary, the old keys still accepted: speakers switch
//     one by one and still understand the others;
//  3. the old keys removed.
//
// done is true when keys hold target alone.
func NextStep(keys [][]byte, target []byte) (next [][]byte, what string, done bool) {
	if len(keys) == 1 && bytes.Equal(keys[0], target) {
		return keys, "", true
	}
	has := false
	for _, k := range keys {
		has = has || bytes.Equal(k, target)
	}
	switch {
	case !has:
		return append(append([][]byte{}, keys...), target), "add the new key beside the old", false
	case !bytes.Equal(keys[0], target):
		next = [][]byte{target}
		for _, k := range keys {
			if !bytes.Equal(k, target) {
				next = append(next, k)
			}
		}
		return next, "make the new key primary", false
	default:
		return [][]byte{target}, "remove the old key", false
	}
}
