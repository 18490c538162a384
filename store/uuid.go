package store

import (
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgUUID carries a uuid.UUID through pgx's native binary uuid codec. Passed
// as is, uuid.UUID is a driver.Valuer and sql.Scanner: pgx then searches
// for an encode plan on every query and decodes through text, which the
// GetUser profile showed costing a tenth of the CPU.
type pgUUID uuid.UUID

// UUIDValue implements pgtype.UUIDValuer.
func (u pgUUID) UUIDValue() (pgtype.UUID, error) { return pgtype.UUID{Bytes: u, Valid: true}, nil }

// ScanUUID implements pgtype.UUIDScanner.
func (u *pgUUID) ScanUUID(v pgtype.UUID) error {
	if !v.Valid {
		return errors.New("uuid is NULL")
	}
	*u = v.Bytes
	return nil
}

// registerTypes names pgUUID and []pgUUID as uuid and uuid[] for query
// modes that take parameter types from Go types.
func registerTypes(m *pgtype.Map) {
	m.RegisterDefaultPgType(pgUUID{}, "uuid")
	m.RegisterDefaultPgType([]pgUUID(nil), "_uuid")
}
