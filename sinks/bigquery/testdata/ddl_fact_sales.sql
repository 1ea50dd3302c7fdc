CREATE TABLE IF NOT EXISTS `shop_dw`.`fact_sales` (
  `order_item_id` INT64 NOT NULL OPTIONS(description="source order_items.order_item_id"),
  `customer_key` INT64 NOT NULL,
  `net` NUMERIC OPTIONS(description="gross − discount"),
  `status` STRING NOT NULL,
  `ordered_at` TIMESTAMP NOT NULL,
  `attributes` JSON,
  PRIMARY KEY (`order_item_id`) NOT ENFORCED
)
PARTITION BY DATE(`ordered_at`)
CLUSTER BY `customer_key`, `status`
OPTIONS(
  description="Sales at order-item grain; \"net\" after discount.",
  max_staleness=INTERVAL 15 MINUTE
);
