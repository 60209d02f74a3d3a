package domain

import "time"

// ListFilter narrows a listing of contracts. Zero fields do not filter.
type ListFilter struct {
	State       State
	Channel     Channel
	PlanID      *int64
	ServiceID   *int64
	SubMchID    *string
	CreatedFrom *time.Time
	CreatedTo   *time.Time
	// Limit is the page size: DefaultListLimit when zero, at most
	// MaxListLimit.
	Limit int
	// Cursor is the opaque next_cursor of the previous page.
	Cursor string
}

// Page sizes of a listing.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)
