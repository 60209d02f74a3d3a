package httpapi

import "github.com/labstack/echo/v5"

// actorKey is where auth keeps the name of the token's holder in the echo
// context.
const actorKey = "contractd.actor"

// actorOf names the operator a request acts for: the holder of its token
// when the token names one, else "". The flows record it in the history;
// it is passed to them as a value, never read back from a log context.
func actorOf(c *echo.Context) string {
	name, _ := c.Get(actorKey).(string)
	return name
}
