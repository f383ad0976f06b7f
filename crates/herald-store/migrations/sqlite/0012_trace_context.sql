-- The W3C traceparent of the span that created a delivery (a request, a routed notification):
-- the sender's span continues that trace. NULL when traces are off or nothing traced it.
ALTER TABLE deliveries ADD COLUMN trace_context TEXT;
