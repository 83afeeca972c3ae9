package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/config"
)

// openAuth loads the tokens file, or says loudly that authentication is
// off (the store is then nil).
func openAuth(cfg config.Config, logger *logrus.Logger) (*auth.Store, error) {
	log := logger.WithField("component", "auth")
	if !cfg.AuthEnabled() {
		msg := "AUTHENTICATION IS OFF: anyone who can reach the HTTP port can read and write every key, and the peer routes (/internal/*) are open; " +
			"admin routes answer only this host and cluster members' hosts. Set AUTH_TOKENS_FILE (and TLS) unless the ports are on a trusted network"
		if cfg.AllowRemoteAdmin {
			msg = "AUTHENTICATION IS OFF and ALLOW_REMOTE_ADMIN=true: anyone who can reach the HTTP port can read and write every key, " +
				"change the membership, snapshot, back up and restore. Set AUTH_TOKENS_FILE unless the ports are on a trusted network"
		}
		log.Warn(msg)
		return nil, nil
	}
	store, err := auth.Open(cfg.AuthTokensFile)
	if err != nil {
		return nil, err
	}
	log.WithFields(store.Tokens().CountFields()).WithField("file", store.Path()).Info("authentication on: bearer tokens required (reload with SIGHUP)")
	if cfg.AllowRemoteAdmin {
		log.Info("ALLOW_REMOTE_ADMIN has no effect while authentication is on: admin routes need an admin token")
	}
	return store, nil
}

// watchSIGHUP reloads the tokens file on every SIGHUP until ctx ends. The
// handler is installed before it returns, so a SIGHUP sent once the node
// is up never falls back to the default action, which would kill the
// process (also when authentication is off).
func watchSIGHUP(ctx context.Context, store *auth.Store, logger *logrus.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	log := logger.WithField("component", "auth")
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if store == nil {
					log.Info("SIGHUP: authentication is off, nothing to reload")
					continue
				}
				store.ReloadAndLog(log)
			}
		}
	}()
}
