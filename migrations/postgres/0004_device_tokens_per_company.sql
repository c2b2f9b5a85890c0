-- A device token is registered once per company, not once overall: an app signed in to
-- several companies (workspaces) gets each company's pushes, and a user of one company can
-- no longer take a token away from another company by registering it. Within one company
-- the user who registers a token last owns it (the device changed hands).
ALTER TABLE device_tokens DROP CONSTRAINT device_tokens_pkey;
ALTER TABLE device_tokens ADD PRIMARY KEY (token, company_id);
