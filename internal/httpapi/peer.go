package httpapi

// The server side of the peer protocol: thin HTTP handlers around the
// cluster, which owns the protocol and its codec.

import (
	"context"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/internal/cluster"
)

// handlePeerApply proposes a follower's batch of encoded key writes,
// checked as strictly as the API's own.
func (s *Service) handlePeerApply(w http.ResponseWriter, r *http.Request, _ params) error {
	n := int64(cluster.MaxApplyBytes+s.opts.MaxKeyBytes+s.opts.MaxValueBytes) + formOverhead
	body, err := readBody(w, r, bodyLimit{n, fmt.Sprintf("the batch limit of %d bytes (%d + MAX_KEY_BYTES + MAX_VALUE_BYTES + %d)", n, cluster.MaxApplyBytes, formOverhead)})
	if err != nil {
		return err
	}
	return s.peerAnswer(w, r, "application/octet-stream", func(ctx context.Context) ([]byte, error) {
		return s.cluster.ServeApply(ctx, body, s.checkCommand)
	})
}

// handlePeerReadIndex answers a follower's read-index request.
func (s *Service) handlePeerReadIndex(w http.ResponseWriter, r *http.Request, _ params) error {
	return s.peerAnswer(w, r, "text/plain", s.cluster.ServeReadIndex)
}

// peerAnswer runs serve within the request's deadline and writes its
// encoded answer.
func (s *Service) peerAnswer(w http.ResponseWriter, r *http.Request, contentType string, serve func(context.Context) ([]byte, error)) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	answer, err := serve(ctx)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(answer)
	return nil
}

// handlePeerInfo tells a node starting with RAFT_BOOTSTRAP_EXPECT who this
// node is.
func (s *Service) handlePeerInfo(w http.ResponseWriter, r *http.Request, _ params) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	info, err := s.cluster.Info(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
