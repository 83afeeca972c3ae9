package node

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// The names a member is known by: its id, and the host:port addresses
// other nodes dial.

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

// SplitHostPort parses "host:port" with a non-empty host and a port in 1..65535.
func SplitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return "", 0, errors.New("host is empty")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 1..65535", portStr)
	}
	return host, port, nil
}
