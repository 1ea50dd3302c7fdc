CREATE TABLE IF NOT EXISTS `shop_dw`.`dim_date` (
  `date_key` INT64 NOT NULL,
  `date` DATE NOT NULL,
  PRIMARY KEY (`date_key`) NOT ENFORCED
);
