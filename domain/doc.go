// Package domain holds contractd's core vocabulary: the contract, its
// lifecycle states and events, the one transition table that decides every
// move, the field rules of a pre-sign request, and the errors every other
// package speaks in.
//
// It imports no other package of contractd and knows nothing of SQL, HTTP or
// WeChat's wire format. Persistence (package store) and transport (package
// httpapi) translate to and from the types defined here.
package domain
