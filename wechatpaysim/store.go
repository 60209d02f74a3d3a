package wechatpaysim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// contractLife is how long a signed contract stays valid (contract_expired_time).
const contractLife = 10 * 365 * 24 * time.Hour

// addSession stores a new session under a fresh id, refusing codes whose contract is signed.
func (s *Simulator) addSession(sess *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.contracts[s.byKey[sess.key()]]; c != nil && c.State == StateSigned {
		return contractExisted()
	}
	for {
		if sess.Family == FamilyDomestic {
			sess.ID = randomString(40, alnum)
		} else {
			sess.ID = sess.CreatedAt.In(time.FixedZone("CST", 8*3600)).Format("20060102") + randomString(12, digits)
		}
		if _, taken := s.byID[sess.ID]; !taken {
			break
		}
	}
	s.byID[sess.ID] = sess
	s.sessions = append(s.sessions, sess)
	return nil
}

func (sess *Session) key() contractKey {
	return contractKey{sess.Family, sess.SubMchID, sess.OutContractCode}
}

// findSession picks the session a SignRequest names; s.mu must be held.
func (s *Simulator) findSession(req SignRequest) (*Session, error) {
	if req.SessionID != "" {
		if sess, ok := s.byID[req.SessionID]; ok {
			return sess, nil
		}
		return nil, fmt.Errorf("session %q: %w", req.SessionID, ErrSessionNotFound)
	}
	if req.OutContractCode == "" {
		return nil, fmt.Errorf("neither session_id nor out_contract_code given: %w", ErrSessionNotFound)
	}
	for i := len(s.sessions) - 1; i >= 0; i-- {
		sess := s.sessions[i]
		if sess.OutContractCode == req.OutContractCode && sess.SubMchID == req.SubMchID && sess.ContractID == "" {
			return sess, nil
		}
	}
	return nil, fmt.Errorf("no open session for out_contract_code %q (sub_mchid %q): %w",
		req.OutContractCode, req.SubMchID, ErrSessionNotFound)
}

// Sign acts as the WeChat user agreeing to a session: it creates a SIGNED contract and sends
// the sign notification to the session's notify URL. It fails with ErrSessionNotFound,
// ErrSessionExpired, ErrSessionUsed or ErrContractExisted.
func (s *Simulator) Sign(ctx context.Context, req SignRequest) (*Contract, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	s.mu.Lock()
	sess, err := s.findSession(req)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.now()
	switch c := s.contracts[s.byKey[sess.key()]]; {
	case sess.ContractID != "":
		err = fmt.Errorf("session %s signed contract %s: %w", sess.ID, sess.ContractID, ErrSessionUsed)
	case !now.Before(sess.ExpiresAt):
		err = fmt.Errorf("session %s expired at %s: %w", sess.ID, sess.ExpiresAt.Format(time.RFC3339), ErrSessionExpired)
	case c != nil && c.State == StateSigned:
		err = fmt.Errorf("out_contract_code %q has contract %s: %w", sess.OutContractCode, c.ContractID, ErrContractExisted)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	c := &Contract{
		Terms:       sess.Terms,
		OpenID:      firstNonEmpty(sess.OpenID, req.OpenID, "o"+randomString(27, alnum)),
		SubOpenID:   sess.SubOpenID,
		SessionID:   sess.ID,
		State:       StateSigned,
		SignedTime:  now,
		ExpiredTime: now.Add(contractLife),
	}
	if c.SubOpenID == "" && c.SubAppID != "" {
		c.SubOpenID = derivedOpenID(c.SubAppID, c.OpenID)
	}
	for {
		c.ContractID = now.In(time.FixedZone("CST", 8*3600)).Format("200601") + randomString(14, digits)
		if _, taken := s.contracts[c.ContractID]; !taken {
			break
		}
	}
	sess.ContractID = c.ContractID
	s.contracts[c.ContractID] = c
	s.order = append(s.order, c.ContractID)
	s.byKey[sess.key()] = c.ContractID
	s.gates[c.ContractID] = &gate{ch: make(chan struct{})}
	signed := *c
	notifyURL := sess.NotifyURL
	s.mu.Unlock()

	s.log.Info("wechatpaysim: contract signed", "contract_id", signed.ContractID,
		"out_contract_code", signed.OutContractCode, "family", signed.Family)
	s.notify(signed, false, notifyURL)
	return &signed, nil
}

// TerminateAsUser acts as the WeChat user ending a signed contract: the contract becomes
// TERMINATED (mode USER) and the termination notification is sent. It fails with
// ErrContractNotFound or ErrContractNotSigned.
func (s *Simulator) TerminateAsUser(ctx context.Context, contractID string) (*Contract, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("terminate: %w", err)
	}
	s.mu.Lock()
	c, ok := s.contracts[contractID]
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("contract %q: %w", contractID, ErrContractNotFound)
	}
	if c.State != StateSigned {
		s.mu.Unlock()
		return nil, fmt.Errorf("contract %q is %s: %w", contractID, c.State, ErrContractNotSigned)
	}
	done := s.terminateLocked(c, TerminationUser, "terminated by the user in WeChat")
	s.mu.Unlock()
	s.notifyTerminated(done)
	return &done, nil
}

// terminateLocked ends a signed contract and returns a copy; s.mu must be held.
func (s *Simulator) terminateLocked(c *Contract, mode, note string) Contract {
	c.State = StateTerminated
	c.TerminatedTime = s.now()
	c.TerminationMode = mode
	c.TerminationNote = note
	return *c
}

// notifyTerminated sends the termination notification of a just-terminated contract.
func (s *Simulator) notifyTerminated(c Contract) {
	s.log.Info("wechatpaysim: contract terminated", "contract_id", c.ContractID,
		"out_contract_code", c.OutContractCode, "mode", c.TerminationMode)
	s.notify(c, true, s.cfg.TerminateNotifyURL)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// derivedOpenID makes a stable openid for the same user under another appid.
func derivedOpenID(appID, openID string) string {
	sum := sha256.Sum256([]byte(appID + "\x00" + openID))
	return "o" + hex.EncodeToString(sum[:])[:27]
}
