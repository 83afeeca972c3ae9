package node

import (
	"errors"
	"fmt"
)

// ValidateNodeID reports whether id can name a node: short, printable,
// and free of characters that would need escaping in URLs and logs.
func ValidateNodeID(id string) error {
	if id == "" {
		return errors.New("node id must not be empty")
	}
	if len(id) > 64 {
		return errors.New("node id is longer than 64 bytes")
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("node id %q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}
