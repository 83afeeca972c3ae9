// Package deploy tests the deployment files without a Docker engine: it
// parses the Dockerfile and runs its build stage's go build (the binary must
// be static), starts that binary with exactly the final stage's environment
// and command, and checks that docker-compose.yml is valid YAML naming only
// known configuration variables.
package deploy
