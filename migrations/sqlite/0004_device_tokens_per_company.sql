-- A device token is registered once per company, not once overall: an app signed in to
-- several companies (workspaces) gets each company's pushes, and a user of one company can
-- no longer take a token away from another company by registering it. Within one company
-- the user who registers a token last owns it (the device changed hands).
CREATE TABLE device_tokens_per_company (
    token       TEXT NOT NULL,
    company_id  TEXT NOT NULL REFERENCES companies(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    platform    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (token, company_id)
);
INSERT INTO device_tokens_per_company (token, company_id, user_id, platform, created_at)
    SELECT token, company_id, user_id, platform, created_at FROM device_tokens;
DROP TABLE device_tokens;
ALTER TABLE device_tokens_per_company RENAME TO device_tokens;
CREATE INDEX device_tokens_user ON device_tokens (user_id);
