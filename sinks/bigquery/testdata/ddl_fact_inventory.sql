CREATE TABLE IF NOT EXISTS `shop_dw`.`fact_inventory` (
  `product_key` INT64 NOT NULL,
  `warehouse_code` STRING NOT NULL,
  `snapshot_date` DATE NOT NULL,
  `on_hand` INT64 NOT NULL,
  `by` BYTES OPTIONS(description="a reserved word\nwith a newline"),
  `ok` BOOL,
  `ratio` FLOAT64,
  PRIMARY KEY (`product_key`, `warehouse_code`, `snapshot_date`) NOT ENFORCED
)
PARTITION BY `snapshot_date`
OPTIONS(
  max_staleness=INTERVAL 90 SECOND
);
