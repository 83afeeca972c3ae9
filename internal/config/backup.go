package config

// DefaultMaxRestoreBytes is the default cap on a backup uploaded to
// POST /restore: generous, since a backup holds the whole store.
const DefaultMaxRestoreBytes = 1 << 30

// loadBackup reads the backup and restore settings.
func (c *Config) loadBackup(p *parser) {
	c.MaxRestoreBytes = int64(p.intRange("MAX_RESTORE_BYTES", DefaultMaxRestoreBytes, 1<<10, 1<<40))
}
