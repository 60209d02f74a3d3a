package store

// FeedAll is feedAll (feed_cursor_test.go) for the store_test package's
// tests.
var FeedAll = feedAll

// WaitFor is waitFor (keyreads_test.go) for the store_test package's
// tests.
var WaitFor = waitFor
