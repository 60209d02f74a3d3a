package wechatpaysim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// retrySchedule is WeChat's wait before each retry of an unacknowledged notification
// (global papay): after the first attempt and nine retries it gives up.
func retrySchedule() []time.Duration {
	return []time.Duration{
		15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute,
		30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 60 * time.Minute,
	}
}

// notification is one notification ready to deliver: the body is fixed, headers are signed
// at every attempt.
type notification struct {
	id, eventType, notifyURL, url string
	contract                      Contract
	terminate                     bool
	body, plaintext               []byte
}

// envelope is a notification body.
type envelope struct {
	ID           string            `json:"id"`
	CreateTime   string            `json:"create_time"`
	ResourceType string            `json:"resource_type"`
	EventType    string            `json:"event_type"`
	Summary      string            `json:"summary"`
	Resource     encryptedResource `json:"resource"`
}

type encryptedResource struct {
	OriginalType   string `json:"original_type"`
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"`
}

// globalResource is a decrypted global papay notification resource.
type globalResource struct {
	MchID                   string `json:"mchid,omitempty"`
	AppID                   string `json:"appid,omitempty"`
	SPMchID                 string `json:"sp_mchid,omitempty"`
	SPAppID                 string `json:"sp_appid,omitempty"`
	SubMchID                string `json:"sub_mchid,omitempty"`
	SubAppID                string `json:"sub_appid,omitempty"`
	OutContractCode         string `json:"out_contract_code"`
	ContractID              string `json:"contract_id"`
	PlanID                  int64  `json:"plan_id"`
	OpenID                  string `json:"openid,omitempty"`
	SPOpenID                string `json:"sp_openid,omitempty"`
	SubOpenID               string `json:"sub_openid,omitempty"`
	OperateTime             string `json:"operate_time"`
	ContractExpiredTime     string `json:"contract_expired_time"`
	ContractTerminationMode string `json:"contract_termination_mode,omitempty"`
}

// resource returns the notification's plaintext resource, event type, summary and
// original type.
func resource(c Contract, terminate bool) (plain any, event, summary, original string) {
	if c.Family == FamilyDomestic {
		r := domesticAnswer(&c)
		r.OperateTime = wechatTime(c.SignedTime)
		event, summary = "ENTRUST.SIGN", "签约成功"
		if terminate {
			r.OperateTime = wechatTime(c.TerminatedTime)
			event, summary = "ENTRUST.TERMINATE", "解约成功"
		}
		return r, event, summary, "entrust"
	}
	r := globalResource{
		OutContractCode: c.OutContractCode, ContractID: c.ContractID, PlanID: c.PlanID,
		OperateTime: wechatTime(c.SignedTime), ContractExpiredTime: wechatTime(c.ExpiredTime),
	}
	if c.Mode == "institutional" {
		r.SPMchID, r.SPAppID, r.SubMchID, r.SubAppID = c.MchID, c.SPAppID, c.SubMchID, c.SubAppID
		r.SPOpenID, r.SubOpenID = c.OpenID, c.SubOpenID
	} else {
		r.MchID, r.AppID, r.OpenID = c.MchID, c.AppID, c.OpenID
	}
	event, summary = "PAPAY.SIGN", "签约成功"
	if terminate {
		r.OperateTime = wechatTime(c.TerminatedTime)
		r.ContractTerminationMode = c.TerminationMode
		event, summary = "PAPAY.TERMINATE", "解约成功"
	}
	return r, event, summary, "papay"
}

// newNotification builds and encrypts the sign or terminate notification of c.
func (s *Simulator) newNotification(c Contract, terminate bool, notifyURL string) (notification, error) {
	plain, event, summary, original := resource(c, terminate)
	plaintext, err := json.Marshal(plain)
	if err != nil {
		return notification{}, fmt.Errorf("encode resource: %w", err)
	}
	nonce := randomString(gcmNonceChars, alnum)
	ciphertext, err := encryptResource(s.cfg.APIv3Key, nonce, original, plaintext)
	if err != nil {
		return notification{}, fmt.Errorf("encrypt resource: %w", err)
	}
	id := newUUID()
	body, err := json.Marshal(envelope{
		ID:           id,
		CreateTime:   wechatTime(s.now()),
		ResourceType: "encrypt-resource",
		EventType:    event,
		Summary:      summary,
		Resource: encryptedResource{
			OriginalType:   original,
			Algorithm:      "AEAD_AES_256_GCM",
			Ciphertext:     ciphertext,
			AssociatedData: original,
			Nonce:          nonce,
		},
	})
	if err != nil {
		return notification{}, fmt.Errorf("encode envelope: %w", err)
	}
	return notification{
		id: id, eventType: event, notifyURL: notifyURL, url: s.deliveryURL(notifyURL),
		contract: c, terminate: terminate, body: body, plaintext: plaintext,
	}, nil
}

// deliveryURL applies NotifyTarget: its scheme and host, the notify URL's path and query.
func (s *Simulator) deliveryURL(notifyURL string) string {
	if s.target == nil {
		return notifyURL
	}
	u, err := url.Parse(notifyURL)
	if err != nil {
		return notifyURL
	}
	u.Scheme, u.Host = s.target.Scheme, s.target.Host
	return u.String()
}

// notify builds c's notification and starts delivering it under the faults in force.
func (s *Simulator) notify(c Contract, terminate bool, notifyURL string) {
	s.mu.Lock()
	g := s.gates[c.ContractID]
	s.mu.Unlock()
	if notifyURL == "" {
		s.log.Warn("wechatpaysim: no termination notify URL configured; notification not sent",
			"contract_id", c.ContractID)
		g.open()
		return
	}
	n, err := s.newNotification(c, terminate, notifyURL)
	if err != nil {
		s.log.Error("wechatpaysim: build notification", "contract_id", c.ContractID, "err", err)
		if terminate {
			g.open()
		}
		return
	}
	s.dispatch(n, g)
}

// dispatch records n's deliveries and starts the goroutine that sends them.
func (s *Simulator) dispatch(n notification, g *gate) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	f := s.faults
	record := func(copyIndex int) *Delivery {
		d := &Delivery{
			ID: n.id, EventType: n.eventType, URL: n.url, NotifyURL: n.notifyURL,
			Family: n.contract.Family, OutContractCode: n.contract.OutContractCode,
			SubMchID: n.contract.SubMchID, ContractID: n.contract.ContractID, Copy: copyIndex,
			Body: n.body, Resource: n.plaintext, Attempts: []Attempt{},
		}
		s.delivs = append(s.delivs, d)
		return d
	}
	if f.DropDeliveries {
		record(0).Dropped = true
		s.mu.Unlock()
		s.log.Info("wechatpaysim: notification dropped (fault)", "id", n.id, "event_type", n.eventType)
		if n.terminate {
			g.open()
		}
		return
	}
	hold := f.ReorderSignTerminate && !n.terminate
	var probe *Delivery
	if f.ProbeSignatures {
		probe = record(0)
		probe.Probe, probe.Held = true, hold
	}
	copies := make([]*Delivery, f.DuplicateDeliveries+1)
	for i := range copies {
		copies[i] = record(i)
		copies[i].Held = hold
	}
	// The override is fixed at dispatch; the signing key and its serial are taken at
	// each attempt, so retries after a rotation carry the new serial.
	override := Faults{OverrideSerial: f.OverrideSerial}
	s.wg.Add(1)
	s.sending++
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			s.sending--
			s.mu.Unlock()
		}()
		if n.terminate {
			defer g.open()
		}
		if hold {
			select {
			case <-g.ch:
			case <-s.ctx.Done():
				return
			}
			s.mu.Lock()
			for _, d := range copies {
				d.Held = false
			}
			if probe != nil {
				probe.Held = false
			}
			s.mu.Unlock()
		}
		if probe != nil {
			s.attempt(probe, n, override)
		}
		var wg sync.WaitGroup
		for _, d := range copies {
			wg.Go(func() { s.deliver(d, n, override) })
		}
		wg.Wait()
	}()
}

// deliver posts n until a receiver acknowledges it or the retry schedule runs out.
func (s *Simulator) deliver(d *Delivery, n notification, override Faults) {
	schedule := retrySchedule()
	for i := 0; ; i++ {
		if s.attempt(d, n, override) {
			s.mu.Lock()
			d.Done = true
			s.mu.Unlock()
			return
		}
		if i == len(schedule) {
			s.mu.Lock()
			d.GaveUp = true
			s.mu.Unlock()
			s.log.Warn("wechatpaysim: notification given up", "id", n.id, "event_type", n.eventType, "url", n.url)
			return
		}
		t := time.NewTimer(time.Duration(float64(schedule[i]) * s.cfg.TimeScale))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// attempt makes one POST of a delivery, signed afresh (with a SIGNTEST signature for
// probes), records it and reports whether the receiver acknowledged with a 2xx status.
func (s *Simulator) attempt(d *Delivery, n notification, override Faults) bool {
	at := s.now()
	start := time.Now()
	status, err := s.post(s.ctx, n, override, d.Probe)
	a := Attempt{At: at, Status: status, DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		a.Err = err.Error()
	}
	s.mu.Lock()
	d.Attempts = append(d.Attempts, a)
	s.mu.Unlock()
	ok := err == nil && status >= 200 && status < 300
	s.log.Info("wechatpaysim: notification attempt", "id", n.id, "event_type", n.eventType,
		"url", n.url, "probe", d.Probe, "copy", d.Copy, "status", status, "err", a.Err)
	return ok
}

func (s *Simulator) post(ctx context.Context, n notification, override Faults, probe bool) (int, error) {
	ts, nonce, sig, serial, err := s.signBody(n.body)
	serial = s.serial(override, serial)
	if err != nil {
		return 0, err
	}
	if probe {
		b := make([]byte, 256)
		_, _ = rand.Read(b)
		sig = probePrefix + base64.StdEncoding.EncodeToString(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(n.body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Mozilla/4.0 (wechatpay-sim)")
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Signature", sig)
	h.Set("Wechatpay-Serial", serial)
	h.Set("Wechatpay-Signature-Type", authSchema)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post notification: %w", err)
	}
	drain(resp.Body)
	return resp.StatusCode, nil
}
